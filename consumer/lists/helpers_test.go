package lists

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// interval is the flush interval of the scheduling tests.
const interval = 10 * time.Second

// record is a distinct, hash-like record for each n.
func record(n int) ident.Hash {
	return sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// ops returns changes with op o to records first..first+n-1.
func ops(o changes.Op, first, n int) []changes.Change {
	cs := make([]changes.Change, n)
	for i := range cs {
		cs[i] = changes.Change{Hash: record(first + i), Op: o}
	}
	return cs
}

// feed puts changes into windows and applies their pending counts to a
// tracker at once, as a worker does.
type feed struct {
	ws *window.Set
	tr *commit.Tracker
}

// add puts cs into list l's window, in epoch pk.
func (f feed) add(l uint32, cs []changes.Change, pk commit.Key, now time.Time) {
	var d commit.Deltas
	f.ws.Add(window.ListID(l), cs, pk, now, &d)
	f.tr.Apply(&d)
}

// open is the open epoch of pt.
func (f feed) open(pt *commit.Partition) commit.Key { return f.tr.Open(pt) }

// pinFunc is a Pinterest whose list writes go to a function; every list
// and audience exists already.
type pinFunc func(ctx context.Context, op pinterest.Operation, records []ident.Hash) error

func (f pinFunc) CheckWriteAccess(context.Context, string) error { return nil }
func (f pinFunc) CustomerLists(context.Context, string) ([]pinterest.CustomerList, error) {
	return nil, nil
}
func (f pinFunc) CreateCustomerList(context.Context, string, string, ident.Type, []ident.Hash) (pinterest.CustomerList, error) {
	return pinterest.CustomerList{}, errors.New("unexpected create")
}
func (f pinFunc) UpdateCustomerList(ctx context.Context, _, _ string, op pinterest.Operation, records []ident.Hash) error {
	return f(ctx, op, records)
}
func (f pinFunc) Audiences(context.Context, string) ([]pinterest.Audience, error) {
	return nil, nil
}
func (f pinFunc) CreateAudience(_ context.Context, _, name, listID string) (pinterest.Audience, error) {
	return pinterest.Audience{ID: "aud-" + name, Rule: pinterest.AudienceRule{CustomerListID: listID}}, nil
}
func (f pinFunc) RepointAudience(_ context.Context, _, audienceID, listID string) (pinterest.Audience, error) {
	return pinterest.Audience{ID: audienceID, Rule: pinterest.AudienceRule{CustomerListID: listID}}, nil
}
func (f pinFunc) Audience(context.Context, string, string) (pinterest.Audience, error) {
	return pinterest.Audience{}, errors.New("unexpected read")
}

// call is one list write the fake Pinterest saw.
type call struct {
	at      time.Time
	op      pinterest.Operation
	records int
}

// newSchedStage builds a stage (no Kafka) whose uploads go to pin, with one
// tracked partition and one resolved list; it returns the stage, a feed of
// its windows, the partition and the list.
func newSchedStage(t interface {
	Helper()
	Fatal(...any)
}, ctx context.Context, maxRecords int, pin Pinterest) (*Stage, feed, *commit.Partition, uint32) {
	t.Helper()
	s, err := New(Config{
		Topic: "changes", Partitions: 1, Group: "g.lists", DLQTopic: "g.dlq", DLQPartitions: 1,
		FlushInterval: interval, CommitInterval: time.Second, RevokeTimeout: time.Second,
		MaxRecords: maxRecords, MaxBuffered: 1_000_000, MaxFlights: 4, ListNameTemplate: DefaultListNameTemplate, ParkedRetry: time.Second,
	}, Deps{Pinterest: pin})
	if err != nil {
		t.Fatal(err)
	}
	s.uploadCtx = ctx
	pt := s.tr.Assign("changes", 0, -1)
	return s, feed{ws: s.ws, tr: s.tr}, pt, s.resolvedList("aud")
}

// resolvedList interns the EMAIL list of audience aud, as found at
// Pinterest, and returns its id.
func (s *Stage) resolvedList(aud string) uint32 {
	li := s.lists.intern(changes.List{Audience: aud, Type: ident.Email}, changes.Header{AdAccount: "549755885175"}, 0)
	li.setIDs(listIDs{name: "pinsync " + aud + " EMAIL", listID: "list-" + aud, audienceID: "aud-" + aud})
	return uint32(li.id)
}
