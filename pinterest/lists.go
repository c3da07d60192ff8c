package pinterest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/pinsync/pinsync/schemas/ident"
)

// CustomerList is a Pinterest customer list. Its counters are numbers in
// the specification, hence float64.
type CustomerList struct {
	ID          string `json:"id"`
	AdAccountID string `json:"ad_account_id"`
	Name        string `json:"name"`
	// Status is PROCESSING, READY, TOO_SMALL or UPLOADING.
	Status                 string  `json:"status"`
	NumBatches             float64 `json:"num_batches"`
	NumUploadedUserRecords float64 `json:"num_uploaded_user_records"`
	NumRemovedUserRecords  float64 `json:"num_removed_user_records"`
	CreatedTime            float64 `json:"created_time"`
	UpdatedTime            float64 `json:"updated_time"`
	// Exceptions holds list errors as Pinterest reports them (undocumented shape).
	Exceptions json.RawMessage `json:"exceptions,omitempty"`
}

func customerListsPath(adAccountID string) string {
	return adAccountPath(adAccountID) + "/customer_lists"
}

// CustomerLists lists every customer list of the ad account.
func (c *Client) CustomerLists(ctx context.Context, adAccountID string) ([]CustomerList, error) {
	if adAccountID == "" {
		return nil, errors.New("pinterest: empty ad account id")
	}
	return paginate[CustomerList](ctx, c, customerListsPath(adAccountID), nil)
}

// FindCustomerList returns the ad account's customer list named exactly
// name, and whether there is one. With several, it returns the first listed.
func (c *Client) FindCustomerList(ctx context.Context, adAccountID, name string) (CustomerList, bool, error) {
	lists, err := c.CustomerLists(ctx, adAccountID)
	if err != nil {
		return CustomerList{}, false, err
	}
	for _, l := range lists {
		if l.Name == name {
			return l, true, nil
		}
	}
	return CustomerList{}, false, nil
}

// CreateCustomerList creates a customer list of type t holding records
// (at least one is required). Records beyond one request are added with
// further updates.
//
// If the list was created but a later chunk failed, the returned list is
// valid and the error is not nil: add the records to that list rather than
// create another. A create whose outcome is unknown (a timeout or 5xx) is
// not blindly repeated: before a retry, the client looks for a list of that
// name and, if there is one, adds the records to it instead.
func (c *Client) CreateCustomerList(ctx context.Context, adAccountID, name string, t ident.Type, records []ident.Hash) (CustomerList, error) {
	switch {
	case adAccountID == "":
		return CustomerList{}, errors.New("pinterest: empty ad account id")
	case name == "":
		return CustomerList{}, errors.New("pinterest: empty customer list name")
	case !t.Valid():
		return CustomerList{}, fmt.Errorf("pinterest: invalid list type %v", t)
	case len(records) == 0:
		return CustomerList{}, errors.New("pinterest: a customer list needs at least one record")
	}
	jname, err := json.Marshal(name)
	if err != nil {
		return CustomerList{}, fmt.Errorf("pinterest: encode list name: %w", err)
	}
	recs := dedupe(records, nil) // creates are rare: no pooling
	path := customerListsPath(adAccountID)

	var list CustomerList
	created, found := false, false
	n := c.chunkSize(len(appendCreate(nil, jname, t, nil)))
	_, err = c.inChunks(ctx, recs[:min(n, len(recs))], n, func(ctx context.Context, chunk []ident.Hash) error {
		if created {
			return c.update(ctx, adAccountID, list.ID, Add, chunk)
		}
		b := c.newBody()
		defer b.release()
		*b.buf = appendCreate(*b.buf, jname, t, chunk)
		err := c.do(ctx, request{
			method: http.MethodPost, path: path, body: b, adAccount: adAccountID,
			recover: func(ctx context.Context) (bool, error) {
				l, ok, err := c.FindCustomerList(ctx, adAccountID, name)
				if ok {
					list, found = l, true
				}
				return ok, err
			},
		}, &list)
		if err != nil {
			return err
		}
		created = true
		if found {
			// An earlier attempt did create the list; whether its records
			// arrived is unknown, and adding them again is harmless.
			return c.update(ctx, adAccountID, list.ID, Add, chunk)
		}
		return nil
	})
	if err != nil {
		if created {
			return list, fmt.Errorf("pinterest: customer list %s created, but adding its first records failed: %w", list.ID, err)
		}
		return CustomerList{}, fmt.Errorf("pinterest: create customer list: %w", err)
	}
	c.log.InfoContext(ctx, "customer list created", "ad_account", adAccountID, "customer_list", list.ID,
		"list_type", t.String(), "records", len(recs))
	// The first request may have been halved; whatever it did not carry is
	// added now.
	if err := c.updateAll(ctx, adAccountID, list.ID, Add, recs[min(n, len(recs)):]); err != nil {
		return list, fmt.Errorf("pinterest: customer list %s created, but adding the remaining records failed: %w", list.ID, err)
	}
	return list, nil
}

// UpdateCustomerList adds records to a customer list or removes them,
// in as many requests as MaxRecords and MaxBytes require. On an error,
// records of earlier requests have been applied; repeating the whole call
// is safe, as ADD and REMOVE are idempotent in effect.
func (c *Client) UpdateCustomerList(ctx context.Context, adAccountID, listID string, op Operation, records []ident.Hash) error {
	switch {
	case adAccountID == "":
		return errors.New("pinterest: empty ad account id")
	case listID == "":
		return errors.New("pinterest: empty customer list id")
	case !op.Valid():
		return fmt.Errorf("pinterest: invalid operation %q", string(op))
	}
	return c.withDeduped(records, func(recs []ident.Hash) error {
		return c.updateAll(ctx, adAccountID, listID, op, recs)
	})
}

func (c *Client) updateAll(ctx context.Context, adAccountID, listID string, op Operation, recs []ident.Hash) error {
	if len(recs) == 0 {
		return nil
	}
	n := c.chunkSize(len(appendUpdate(nil, op, nil)))
	sent, err := c.inChunks(ctx, recs, n, func(ctx context.Context, chunk []ident.Hash) error {
		return c.update(ctx, adAccountID, listID, op, chunk)
	})
	if err != nil {
		return fmt.Errorf("pinterest: %s %d records on customer list %s (%d sent): %w", op, len(recs), listID, sent, err)
	}
	return nil
}

// update sends one PATCH.
func (c *Client) update(ctx context.Context, adAccountID, listID string, op Operation, chunk []ident.Hash) error {
	b := c.newBody()
	defer b.release()
	*b.buf = appendUpdate(*b.buf, op, chunk)
	return c.do(ctx, request{
		method:    http.MethodPatch,
		path:      customerListsPath(adAccountID) + "/" + url.PathEscape(listID),
		body:      b,
		adAccount: adAccountID,
	}, nil)
}
