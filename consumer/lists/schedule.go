package lists

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// schedule dispatches due windows: on a tick, when a window fills, and
// when a flight ends.
func (s *Stage) schedule(ctx context.Context) {
	tick := min(max(s.cfg.FlushInterval/20, 5*time.Millisecond), 250*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.ws.Wake():
		}
		s.dispatch()
	}
}

// dispatch starts flights for the windows due now, within the write budget
// and the flight limit: a due window the budget cannot pay for keeps
// filling, so that budget goes to fuller requests.
func (s *Stage) dispatch() {
	now := s.now()
	budget := math.Inf(1)
	if s.writes != nil {
		budget = math.Floor(s.writes.Tokens(now))
	}
	s.mu.Lock()
	free := s.cfg.MaxFlights - s.flights
	closing := s.closing
	s.mu.Unlock()
	s.m.buffered.Set(float64(s.ws.Buffered()))
	s.m.bufferedBytes.Set(float64(s.ws.Bytes()))
	if free <= 0 {
		return
	}
	for _, w := range s.ws.Due(now, s.cfg.FlushInterval, budget, free) {
		// Workers change windows concurrently: read them under the lock.
		urgent, full := s.ws.Kind(w)
		reason := window.FlushInterval
		switch {
		case urgent && closing:
			reason = window.FlushShutdown
		case urgent:
			reason = window.FlushRevoke
		case full:
			reason = window.FlushFull
		}
		f, ctx := s.ws.Take(w, reason, s.uploadCtx)
		s.mu.Lock()
		s.flights++
		s.mu.Unlock()
		s.flightWG.Add(1)
		go s.fly(ctx, f)
	}
}

// fly uploads one flight and finishes it.
func (s *Stage) fly(ctx context.Context, f *window.Flight) {
	defer s.flightWG.Done()
	li := s.lists.get(f.List())
	start := s.now()
	addsOK, removesOK, err := s.upload(ctx, li, f)
	end := s.now()
	cancelled := ctx.Err() != nil // finish cancels ctx
	ok := func(i int) bool {
		if i < len(f.Adds()) {
			return addsOK
		}
		return removesOK
	}
	failed := err != nil
	parked := false
	if reason := rebuildReason(err); reason != "" && !cancelled {
		// The list cannot take these changes: marked for a rebuild, it
		// drops them (the flight's too) and nothing waits for it.
		if merr := s.markRebuild(ctx, li, reason); merr != nil {
			err = fmt.Errorf("%w (and marking the list for a rebuild failed: %v)", err, merr)
		} else {
			parked = true
		}
	}
	var d commit.Deltas
	s.ws.Finish(f, ok, failed && !parked, end, backoff, &d)
	s.tr.Apply(&d)
	s.mu.Lock()
	s.flights--
	if failed {
		s.lastErr = err
	}
	s.mu.Unlock()
	outcome := "ok"
	switch {
	case errors.Is(err, ErrNotOwner):
		outcome = "not_owner"
		s.log.Warn("upload not sent: this member no longer owns the list's partition", "audience", li.key.Audience,
			"list_type", li.key.Type.String(), "records", f.Records(), "err", err)
	case parked:
		outcome = "parked"
	case failed:
		outcome = "error"
		if !cancelled {
			s.log.Warn("upload failed; the window keeps its changes and retries", "audience", li.key.Audience,
				"list_type", li.key.Type.String(), "records", f.Records(), "err", err)
		}
	}
	s.m.flushes.WithLabelValues(f.Reason(), outcome).Inc()
	s.m.uploadDuration.Observe(end.Sub(start).Seconds())
	if addsOK || removesOK {
		s.observeLatency(f, ok, end)
	}
}

func (s *Stage) observeLatency(f *window.Flight, ok func(int) bool, end time.Time) {
	endMS := end.UnixMilli()
	for i := range f.Records() {
		if ts := f.EventTime(i); ts > 0 && ok(i) {
			s.m.eventToUpload.Observe(float64(endMS-ts) / 1000)
		}
	}
}

// upload sends a flight's adds and removes to its list, creating the list
// with the adds when it does not exist yet. Every write is preceded by a
// check that this member still owns the list's partition.
func (s *Stage) upload(ctx context.Context, li *listInfo, f *window.Flight) (addsOK, removesOK bool, err error) {
	ctx = pinterest.WithWriteGuard(ctx, func(ctx context.Context) error { return s.owns(ctx, li.partition) })
	listID, created, err := s.res.ensure(ctx, li, f.Adds())
	if listID == "" && pinterest.IsRefused(err) && len(f.Adds()) > 0 {
		// The creation was refused for its records: created with those
		// Pinterest takes, the others dead-lettered.
		if listID, err = s.createRefused(ctx, li, f.Adds(), err); err != nil {
			return false, false, err
		}
		return true, true, nil
	}
	if created {
		s.m.uploads.WithLabelValues("create", "ok").Inc()
		s.m.perRequest.Observe(float64(len(f.Adds())))
		s.countUploaded(li, "add", len(f.Adds()))
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
	if err := s.uploadOp(ctx, li, listID, pinterest.Add, f.Adds()); err != nil {
		return false, false, err
	}
	if err := s.uploadOp(ctx, li, listID, pinterest.Remove, f.Removes()); err != nil {
		return true, false, err
	}
	return true, true, nil
}

// createRefused creates li's list with adds after a creation with them was
// refused for its records (cause): it bisects them, creates the list with
// the first part Pinterest takes, adds the rest as updates (bisected the
// same way) and dead-letters the records refused alone. It returns the
// list's id ("" when Pinterest refused every record: there is no list).
func (s *Stage) createRefused(ctx context.Context, li *listInfo, adds []ident.Hash, cause error) (string, error) {
	if len(adds) == 1 {
		return "", s.deadLetterHash(ctx, li, "", pinterest.Add, adds[0], cause)
	}
	listID := ""
	for _, part := range [][]ident.Hash{adds[:len(adds)/2], adds[len(adds)/2:]} {
		if listID != "" {
			if err := s.uploadOp(ctx, li, listID, pinterest.Add, part); err != nil {
				return listID, err
			}
			continue
		}
		id, created, err := s.res.ensure(ctx, li, part)
		switch {
		case id == "" && pinterest.IsRefused(err):
			if id, err = s.createRefused(ctx, li, part, err); err != nil {
				return id, err
			}
		case err != nil:
			return id, err
		case created:
			s.m.uploads.WithLabelValues("create", "ok").Inc()
			s.countUploaded(li, "add", len(part))
		case id != "": // it exists after all: part was not sent
			if err := s.uploadOp(ctx, li, id, pinterest.Add, part); err != nil {
				return id, err
			}
		}
		listID = id
	}
	return listID, nil
}

// countUploaded counts n records a write took for li, by op (add,
// remove).
func (s *Stage) countUploaded(li *listInfo, op string, n int) {
	s.m.uploaded.WithLabelValues(li.key.Audience, li.key.Type.String(), op).Add(float64(n))
	li.mu.Lock()
	if op == "add" {
		li.added += int64(n)
	} else {
		li.removed += int64(n)
	}
	li.mu.Unlock()
}

// uploadOp writes records with op; a batch Pinterest rejects for good is
// bisected and the records it rejects alone are dead-lettered.
func (s *Stage) uploadOp(ctx context.Context, li *listInfo, listID string, o pinterest.Operation, hs []ident.Hash) error {
	if len(hs) == 0 {
		return nil
	}
	label := "add"
	if o == pinterest.Remove {
		label = "remove"
	}
	err := s.pin.UpdateCustomerList(ctx, li.adAccount(), listID, o, hs)
	if err == nil {
		s.m.uploads.WithLabelValues(label, "ok").Inc()
		s.m.perRequest.Observe(float64(len(hs)))
		s.countUploaded(li, label, len(hs))
		return nil
	}
	s.m.uploads.WithLabelValues(label, "error").Inc()
	if !pinterest.IsRefused(err) {
		return err
	}
	if len(hs) == 1 {
		return s.deadLetterHash(ctx, li, listID, o, hs[0], err)
	}
	mid := len(hs) / 2
	if err := s.uploadOp(ctx, li, listID, o, hs[:mid]); err != nil {
		return err
	}
	return s.uploadOp(ctx, li, listID, o, hs[mid:])
}

// deadLetterHash dead-letters one record Pinterest refused for good. The
// value is the hash, never a plaintext identifier.
func (s *Stage) deadLetterHash(ctx context.Context, li *listInfo, listID string, o pinterest.Operation, h ident.Hash, cause error) error {
	code := ""
	var pe *pinterest.Error
	if errors.As(cause, &pe) {
		code = strconv.Itoa(pe.Code)
	}
	rec := &kgo.Record{
		Topic:     s.cfg.DLQTopic,
		Partition: li.partition % s.cfg.DLQPartitions,
		Value:     h.AppendHex(nil),
		Headers: []kgo.RecordHeader{
			{Key: "pinsync.reason", Value: []byte("pinterest_rejected")},
			{Key: "pinsync.pinterest.code", Value: []byte(code)},
			{Key: "pinsync.audience", Value: []byte(li.key.Audience)},
			{Key: "pinsync.list_type", Value: []byte(li.key.Type.String())},
			{Key: "pinsync.list_id", Value: []byte(listID)},
			{Key: "pinsync.operation", Value: []byte(string(o))},
		},
	}
	if err := s.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return err
	}
	s.deps.DeadLetters.WithLabelValues("pinterest_rejected").Inc()
	return nil
}

// backoff is the wait before a failed window is flushed again.
func backoff(fails int) time.Duration {
	d := 500 * time.Millisecond << min(fails-1, 7)
	d = min(d, time.Minute)
	return d/2 + rand.N(d/2+1)
}

// pollLoop polls each owned list's audience every AudiencePollInterval
// (never when negative).
func (s *Stage) pollLoop(ctx context.Context) {
	if s.cfg.AudiencePollInterval < 0 {
		return
	}
	t := time.NewTicker(s.cfg.AudiencePollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.pollAudiences(ctx)
		}
	}
}

// pollAudiences refreshes each owned list's audience size and status from
// Pinterest: the size Pinterest reports counts matched users, not uploaded
// records.
func (s *Stage) pollAudiences(ctx context.Context) {
	owned := s.ownedLists()
	s.readListCreation(ctx, owned)
	for _, li := range owned {
		ids := li.ids()
		if ids.audienceID == "" || ctx.Err() != nil {
			continue
		}
		au, err := s.pin.Audience(ctx, li.adAccount(), ids.audienceID)
		if err != nil {
			s.log.Warn("audience poll failed", "audience", li.key.Audience, "list_type", li.key.Type.String(), "err", err)
			continue
		}
		li.setAudience(au)
		var size float64
		if au.Size != nil {
			size = float64(*au.Size)
		}
		ready := 0.0
		if au.Status == "READY" {
			ready = 1
		}
		s.m.pinSize.WithLabelValues(li.key.Audience, li.key.Type.String()).Set(size)
		s.m.pinReady.WithLabelValues(li.key.Audience, li.key.Type.String()).Set(ready)
		if c := li.created(); !c.IsZero() {
			s.m.listCreated.WithLabelValues(li.key.Audience, li.key.Type.String()).Set(float64(c.Unix()))
		}
	}
}

// readListCreation learns when Pinterest created each of lists whose
// creation is not known yet (a list is judged by its match rate only once
// Pinterest has had a day or two to match it): one listing of each ad
// account concerned, once per list.
func (s *Stage) readListCreation(ctx context.Context, lists []*listInfo) {
	need := map[string]map[string][]*listInfo{} // account → list id → lists
	for _, li := range lists {
		if acct, id, unknown := li.creationUnknown(); unknown {
			if need[acct] == nil {
				need[acct] = map[string][]*listInfo{}
			}
			need[acct][id] = append(need[acct][id], li)
		}
	}
	for acct, byID := range need {
		if ctx.Err() != nil {
			return
		}
		all, err := s.pin.CustomerLists(ctx, acct)
		if err != nil {
			s.log.Warn("customer list listing failed", "ad_account", acct, "err", err)
			continue
		}
		for _, cl := range all {
			for _, li := range byID[cl.ID] {
				if cl.CreatedTime > 0 {
					li.setListCreated(cl.ID, time.Unix(int64(cl.CreatedTime), 0))
				}
			}
		}
	}
}

// ownedLists returns the lists of the partitions this member owns.
func (s *Stage) ownedLists() []*listInfo {
	s.mu.Lock()
	owned := make(map[int32]bool, len(s.workers))
	for p := range s.workers {
		owned[p] = true
	}
	s.mu.Unlock()
	var out []*listInfo
	for _, li := range s.lists.all() {
		if owned[li.partition] {
			out = append(out, li)
		}
	}
	return out
}
