package sink

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// uploader sends a flight's records to its list: it has the list resolved
// (found or created with the adds), writes the adds and then the removes,
// bisects a batch Pinterest refuses for good, and dead-letters the records
// it refuses alone. Every write runs the guard just before it goes out.
type uploader struct {
	write      ListWriter
	res        *resolver
	guard      Guard
	deadLetter DeadLetter
	m          *metrics
}

// upload sends adds and removes to li, creating the list with the adds
// when it does not exist yet. It reports which of the two reached
// Pinterest (or were dead-lettered).
func (u *uploader) upload(ctx context.Context, li *list, adds, removes []ident.Hash) (addsOK, removesOK bool, err error) {
	ctx = u.guard.on(ctx, li)
	listID, created, err := u.res.ensure(ctx, li, adds)
	if listID == "" && refusedCreation(err) && len(adds) > 0 {
		// The creation carrying the adds was refused: perhaps for some of
		// them, perhaps whatever they are (see createRefused).
		if _, err = u.createRefused(ctx, li, adds, err); err != nil {
			return false, false, err
		}
		return true, true, nil
	}
	if created {
		u.m.uploads.WithLabelValues("create", "ok").Inc()
		u.m.perRequest.Observe(float64(len(adds)))
		u.m.countUploaded(li, "add", len(adds))
		// A list this flight created holds only its adds: the removals,
		// disjoint from them, have nothing to remove.
		return true, true, err
	}
	if err != nil {
		return false, false, err
	}
	if listID == "" { // no list and nothing to add: removals are moot
		return true, true, nil
	}
	if err := u.send(ctx, li, listID, pinterest.Add, adds); err != nil {
		return false, false, err
	}
	if err := u.send(ctx, li, listID, pinterest.Remove, removes); err != nil {
		return true, false, err
	}
	return true, true, nil
}

// createRefused makes li's list after a creation carrying adds was refused
// for good (cause). A creation may be refused for a record, or whatever
// its records are (the list's name, a limit of the account): it tries again
// with one record, then with another. When one of them makes the list, the
// other adds follow as updates, bisected, and the records refused alone are
// dead-lettered. When both are refused the creation is not about its
// records: nothing is dead-lettered, and the error parks the list
// (refused). It returns the list's id.
func (u *uploader) createRefused(ctx context.Context, li *list, adds []ident.Hash, cause error) (string, error) {
	probes := []int{0}
	if len(adds) > 1 {
		probes = append(probes, len(adds)-1)
	}
	for _, i := range probes {
		id, created, err := u.res.ensure(ctx, li, adds[i:i+1])
		switch {
		case id == "" && refusedCreation(err):
			continue
		case err != nil && !created:
			return id, err
		}
		rest := adds
		if created {
			u.m.uploads.WithLabelValues("create", "ok").Inc()
			u.m.countUploaded(li, "add", 1)
			rest = append(append(make([]ident.Hash, 0, len(adds)-1), adds[:i]...), adds[i+1:]...)
		}
		if serr := u.send(ctx, li, id, pinterest.Add, rest); serr != nil {
			return id, serr
		}
		return id, err // an error of the audience, with the list made
	}
	return "", notOfRecords(fmt.Errorf("the list's creation is refused whatever its records (%d tried): %w", len(probes), cause))
}

// send writes records with op; a batch Pinterest refuses for good is
// bisected and the records it refuses alone are dead-lettered.
func (u *uploader) send(ctx context.Context, li *list, listID string, o pinterest.Operation, hs []ident.Hash) error {
	if len(hs) == 0 {
		return nil
	}
	label := "add"
	if o == pinterest.Remove {
		label = "remove"
	}
	err := u.write.UpdateCustomerList(ctx, li.adAccount(), listID, o, hs)
	if err == nil {
		u.m.uploads.WithLabelValues(label, "ok").Inc()
		u.m.perRequest.Observe(float64(len(hs)))
		u.m.countUploaded(li, label, len(hs))
		return nil
	}
	u.m.uploads.WithLabelValues(label, "error").Inc()
	if !pinterest.IsRefused(err) {
		return err
	}
	if len(hs) == 1 {
		return u.refused(ctx, li, listID, o, hs[0], err)
	}
	mid := len(hs) / 2
	if err := u.send(ctx, li, listID, o, hs[:mid]); err != nil {
		return err
	}
	return u.send(ctx, li, listID, o, hs[mid:])
}

// refused hands one record Pinterest refused for good (cause) to the
// dead-letter topic.
func (u *uploader) refused(ctx context.Context, li *list, listID string, o pinterest.Operation, h ident.Hash, cause error) error {
	code := ""
	var pe *pinterest.Error
	if errors.As(cause, &pe) {
		code = strconv.Itoa(pe.Code)
	}
	return u.deadLetter(ctx, Refused{Partition: li.partition, List: li.key, ListID: listID, Op: string(o), Hash: h, Code: code})
}
