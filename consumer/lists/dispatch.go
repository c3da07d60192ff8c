package lists

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/lists/sink"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/schemas/ident"
)

// tokens is what the dispatcher needs of the write budget.
type tokens interface {
	// Tokens is how many requests may be sent at now without waiting.
	Tokens(now time.Time) float64
	// Short records that due windows waited at now for want of budget.
	Short(now time.Time)
}

// uploader is what the dispatcher needs of the sink.
type uploader interface {
	Upload(ctx context.Context, l window.ListID, adds, removes []ident.Hash) sink.Result
	Key(l window.ListID) changes.List
}

// dispatcher sends the windows that are due to the sink, as flights: on a
// tick, when a window fills, and when a flight ends; within the write
// budget and the flight limit. A flight's outcome goes back to its window
// and its pending counts to the tracker.
type dispatcher struct {
	ws         *window.Set
	tr         *commit.Tracker
	sink       uploader
	writes     tokens // nil: no budget
	interval   time.Duration
	maxFlights int
	// closing is set once the member shuts down: an urgent window flushes
	// for the shutdown, not for a revoke.
	closing *atomic.Bool
	// ctx is every flight's parent: it outlives the run, so that the
	// shutdown flush can finish, and ends when Close's deadline does.
	ctx context.Context
	m   *metrics
	log *slog.Logger
	now func() time.Time

	mu      sync.Mutex
	flights int
	lastErr error
	wg      sync.WaitGroup // the flights in progress
}

// run dispatches until ctx ends.
func (d *dispatcher) run(ctx context.Context) {
	tick := min(max(d.interval/20, 5*time.Millisecond), 250*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.ws.Wake():
		}
		d.dispatch()
	}
}

// dispatch starts flights for the windows due now, within the write budget
// and the flight limit: a due window the budget cannot pay for keeps
// filling, so that budget goes to fuller requests.
func (d *dispatcher) dispatch() {
	now := d.now()
	budget := math.Inf(1)
	if d.writes != nil {
		budget = math.Floor(d.writes.Tokens(now))
	}
	d.mu.Lock()
	free := d.maxFlights - d.flights
	d.mu.Unlock()
	closing := d.closing.Load()
	d.m.buffered.Set(float64(d.ws.Buffered()))
	d.m.bufferedBytes.Set(float64(d.ws.Bytes()))
	if free <= 0 {
		return
	}
	due, short := d.ws.Schedule(now, d.interval, budget, free)
	if short && d.writes != nil {
		d.writes.Short(now)
	}
	for _, w := range due {
		// Workers change windows concurrently: read them under the lock.
		urgent, full := d.ws.Kind(w)
		reason := window.FlushInterval
		switch {
		case urgent && closing:
			reason = window.FlushShutdown
		case urgent:
			reason = window.FlushRevoke
		case full:
			reason = window.FlushFull
		}
		f, ctx := d.ws.Take(w, reason, d.ctx)
		d.mu.Lock()
		d.flights++
		d.mu.Unlock()
		d.wg.Add(1)
		go d.fly(ctx, f)
	}
}

// fly uploads one flight and finishes it.
func (d *dispatcher) fly(ctx context.Context, f *window.Flight) {
	defer d.wg.Done()
	start := d.now()
	res := d.sink.Upload(ctx, f.List(), f.Adds(), f.Removes())
	end := d.now()
	cancelled := ctx.Err() != nil // Finish cancels ctx
	ok := func(i int) bool {
		if i < len(f.Adds()) {
			return res.AddsOK
		}
		return res.RemovesOK
	}
	err := res.Err
	failed := err != nil
	var deltas commit.Deltas
	d.ws.Finish(f, ok, failed && !res.Parked, end, backoff, &deltas)
	d.tr.Apply(&deltas)
	d.mu.Lock()
	d.flights--
	if failed {
		d.lastErr = err
	}
	d.mu.Unlock()
	outcome := "ok"
	switch {
	case errors.Is(err, ErrNotOwner):
		outcome = "not_owner"
		l := d.sink.Key(f.List())
		d.log.Warn("upload not sent: this member no longer owns the list's partition", "audience", l.Audience,
			"list_type", l.Type.String(), "records", f.Records(), "err", err)
	case res.Parked:
		outcome = "parked"
	case failed:
		outcome = "error"
		if !cancelled {
			l := d.sink.Key(f.List())
			d.log.Warn("upload failed; the window keeps its changes and retries", "audience", l.Audience,
				"list_type", l.Type.String(), "records", f.Records(), "err", err)
		}
	}
	d.m.flushes.WithLabelValues(f.Reason(), outcome).Inc()
	d.m.uploadDuration.Observe(end.Sub(start).Seconds())
	if res.AddsOK || res.RemovesOK {
		d.observeLatency(f, ok, end)
	}
}

func (d *dispatcher) observeLatency(f *window.Flight, ok func(int) bool, end time.Time) {
	endMS := end.UnixMilli()
	for i := range f.Records() {
		if ts := f.EventTime(i); ts > 0 && ok(i) {
			d.m.eventToUpload.Observe(float64(endMS-ts) / 1000)
		}
	}
}

// forget drops partitions: they leave the tracker (marked dropped), their
// changes leave the windows, and the flights that hold some are cancelled
// and waited for. Once it returns no upload of their changes is in flight
// or starts later.
func (d *dispatcher) forget(parts map[*commit.Partition]bool) {
	for p := range parts {
		d.tr.Remove(p)
	}
	// One step: marking their windows urgent first would let the scheduler
	// start a flight of their changes that nobody waits for.
	flights := d.ws.Drop(parts)
	for _, f := range flights {
		f.Cancel()
	}
	for _, f := range flights {
		<-f.Done()
	}
}

// setMode sets what list l's window does with its changes, for the sink
// (a list parked or rebuilt), and applies the pending counts it releases.
func (d *dispatcher) setMode(l window.ListID, m window.Mode) {
	var deltas commit.Deltas
	d.ws.SetMode(l, m, &deltas)
	d.tr.Apply(&deltas)
}

// status returns the flights in progress and the last upload error.
func (d *dispatcher) status() (flights int, lastErr error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.flights, d.lastErr
}

// backoff is the wait before a failed window is flushed again, and before
// a failed rebuild is tried again.
func backoff(fails int) time.Duration {
	d := 500 * time.Millisecond << min(fails-1, 7)
	d = min(d, time.Minute)
	return d/2 + rand.N(d/2+1)
}
