package sink

import (
	"context"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// The sink's needs of the Pinterest API client, split by the part of the
// sink that has them, so that a test of one part fakes only what that
// part calls. *pinterest.Client implements them all.

// ListWriter writes records to an existing customer list: what an upload
// and a rebuild's filling need.
type ListWriter interface {
	UpdateCustomerList(ctx context.Context, adAccountID, listID string, op pinterest.Operation, records []ident.Hash) error
}

// ListMaker finds, creates and repoints customer lists and their
// CUSTOMER_LIST audiences: what resolution and rebuilds need.
type ListMaker interface {
	CheckWriteAccess(ctx context.Context, adAccountID string) error
	CustomerLists(ctx context.Context, adAccountID string) ([]pinterest.CustomerList, error)
	CreateCustomerList(ctx context.Context, adAccountID, name string, t ident.Type, records []ident.Hash) (pinterest.CustomerList, error)
	Audiences(ctx context.Context, adAccountID string) ([]pinterest.Audience, error)
	CreateAudience(ctx context.Context, adAccountID, name, customerListID string) (pinterest.Audience, error)
	RepointAudience(ctx context.Context, adAccountID, audienceID, customerListID string) (pinterest.Audience, error)
}

// AudienceReader reads what Pinterest reports of lists and audiences: what
// the audience poll needs.
type AudienceReader interface {
	CustomerLists(ctx context.Context, adAccountID string) ([]pinterest.CustomerList, error)
	Audience(ctx context.Context, adAccountID, audienceID string) (pinterest.Audience, error)
}

// Pinterest is everything the sink calls.
type Pinterest interface {
	ListWriter
	ListMaker
	AudienceReader
}

// Registry keeps each list's Pinterest ids across owners, so that a new
// owner does not look lists up by name, and the marks of the lists that
// wait for a rebuild. *control.Registry implements it.
type Registry interface {
	// Lookup returns the entry of k, having read every entry written
	// before the call when k was not already known.
	Lookup(ctx context.Context, k control.ListKey) (control.ListEntry, bool, error)
	// Current returns the entry of k having read every record written
	// before the call.
	Current(ctx context.Context, k control.ListKey) (control.ListEntry, bool, error)
	// Update changes the entry of k as it stands (see
	// control.Registry.Update).
	Update(ctx context.Context, k control.ListKey, change func(cur control.ListEntry, ok bool) (control.ListEntry, error)) (control.ListEntry, error)
	// Rebuilds returns the entries of the lists marked for a rebuild, as
	// read so far.
	Rebuilds() map[control.ListKey]control.ListEntry
}
