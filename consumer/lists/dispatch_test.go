package lists

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// TestSchedulerFlushesAtTheIntervalAndWhenFull runs the engine's scheduling
// loop in a synctest bubble: a window is flushed when its oldest change has
// waited the flush interval and not before, and at once when it holds the
// per-request maximum.
func TestSchedulerFlushesAtTheIntervalAndWhenFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var mu sync.Mutex
		var calls []call
		pin := pinFunc(func(_ context.Context, op pinterest.Operation, recs []ident.Hash) error {
			mu.Lock()
			defer mu.Unlock()
			calls = append(calls, call{time.Now(), op, len(recs)})
			return nil
		})
		const max = 50
		e, tw, pt, aud := newSched(t, ctx, max, pin)
		done := make(chan struct{})
		go func() { defer close(done); e.run(ctx) }()
		seen := func() []call {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(calls)
		}

		start := time.Now()
		tw.add(aud, ops(changes.Add, 0, 3), tw.open(pt), e.now())
		time.Sleep(interval / 2)
		tw.add(aud, ops(changes.Add, 3, 3), tw.open(pt), e.now())
		time.Sleep(interval/2 - time.Millisecond)
		if c := seen(); len(c) != 0 {
			t.Fatalf("flushed before the interval: %v", c)
		}
		time.Sleep(interval / 10)
		c := seen()
		if len(c) != 1 || c[0].op != pinterest.Add || c[0].records != 6 {
			t.Fatalf("at the interval: %v, want one add of 6 records", c)
		}
		if at := c[0].at.Sub(start); at < interval || at > interval+interval/10 {
			t.Fatalf("flushed %s after the first change, want the flush interval %s (within one tick)", at, interval)
		}
		if !e.tr.Idle(pt) || !e.ws.Empty() {
			t.Fatal("the flushed changes are still pending")
		}

		// The per-request maximum flushes at once, without waiting.
		start = time.Now()
		tw.add(aud, ops(changes.Remove, 100, max+1), tw.open(pt), e.now())
		c = seen()[1:]
		if len(c) != 1 || c[0].op != pinterest.Remove || c[0].records != max || !c[0].at.Equal(start) {
			t.Fatalf("a full window: %v, want one remove of %d records at once", c, max)
		}
		// The one record left waits for its interval.
		time.Sleep(interval - time.Millisecond)
		if c = seen()[1:]; len(c) != 1 {
			t.Fatalf("the remainder flushed before the interval: %v", c)
		}
		time.Sleep(interval / 10)
		if c = seen()[1:]; len(c) != 2 || c[1].records != 1 {
			t.Fatalf("the remainder: %v", c)
		}
		cancel()
		<-done
		e.wg.Wait()
	})
}

// TestSchedulerNeverOverlapsFlushesOfAWindow: while a flush of a window is
// in flight, a full window waits; its next flush starts when the first
// ended, and holds the newer change.
func TestSchedulerNeverOverlapsFlushesOfAWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		release := make(chan struct{})
		var mu sync.Mutex
		var got []string
		inFlight := 0
		pin := pinFunc(func(ctx context.Context, op pinterest.Operation, recs []ident.Hash) error {
			mu.Lock()
			inFlight++
			if inFlight > 1 {
				t.Errorf("%d flushes of one window at once", inFlight)
			}
			got = append(got, string(op))
			mu.Unlock()
			select {
			case <-release:
			case <-ctx.Done():
			}
			mu.Lock()
			inFlight--
			mu.Unlock()
			return ctx.Err()
		})
		e, tw, pt, aud := newSched(t, ctx, 2, pin)
		done := make(chan struct{})
		go func() { defer close(done); e.run(ctx) }()
		pk := tw.open(pt)
		tw.add(aud, ops(changes.Add, 1, 2), pk, e.now())
		synctest.Wait()
		// The record is removed while its add is in flight; the window is
		// full again.
		tw.add(aud, append(ops(changes.Remove, 1, 1), ops(changes.Remove, 3, 1)...), pk, e.now())
		time.Sleep(3 * interval)
		mu.Lock()
		if len(got) != 1 {
			t.Fatalf("calls while the first is in flight: %v", got)
		}
		mu.Unlock()
		release <- struct{}{}
		synctest.Wait()
		mu.Lock()
		if !slices.Equal(got, []string{string(pinterest.Add), string(pinterest.Remove)}) {
			t.Fatalf("calls: %v, want the add, then the remove", got)
		}
		mu.Unlock()
		release <- struct{}{}
		synctest.Wait()
		if !e.tr.Idle(pt) || !e.ws.Empty() {
			t.Fatal("changes still pending")
		}
		cancel()
		<-done
		e.wg.Wait()
	})
}

// TestDispatchDoesNotRaceWithWorkers: the scheduler decides why a window is
// flushed while workers keep adding to it; run with -race.
func TestDispatchDoesNotRaceWithWorkers(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pin := pinFunc(func(context.Context, pinterest.Operation, []ident.Hash) error { return nil })
	e, tw, pt, aud := newSched(t, ctx, 2, pin)
	aud2 := e.resolvedList("aud2")
	stop := make(chan struct{})
	added := make(chan struct{})
	go func() {
		defer close(added)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tw.add(aud, ops(changes.Add, 2*i, 2), tw.open(pt), e.now())
			tw.add(aud2, ops(changes.Remove, 2*i, 2), tw.open(pt), e.now())
		}
	}()
	for i := 0; i < 20000; i++ {
		e.dispatch()
	}
	close(stop)
	<-added
	e.wg.Wait()
}

// TestForgetLeavesNoFlightBehind: once forget (revoke, loss) returns, no
// upload of the forgotten partition's changes is in flight or starts later,
// whatever the scheduler does meanwhile: the next owner's uploads must not
// be overtaken by a stale one.
func TestForgetLeavesNoFlightBehind(t *testing.T) {
	for i := 0; i < 100; i++ {
		ctx, cancel := context.WithCancel(t.Context())
		var mu sync.Mutex
		forgotten := false
		pin := pinFunc(func(context.Context, pinterest.Operation, []ident.Hash) error {
			mu.Lock()
			defer mu.Unlock()
			if forgotten {
				t.Errorf("iteration %d: an upload of a forgotten partition started after forget returned", i)
			}
			return nil
		})
		e, tw, pt, _ := newSched(t, ctx, 1000, pin)
		for a := 0; a < 20; a++ {
			aud := e.resolvedList(fmt.Sprint("aud", a))
			tw.add(aud, ops(changes.Add, 0, 3), tw.open(pt), e.now())
		}
		done := make(chan struct{})
		go func() { defer close(done); e.run(ctx) }()
		e.forget(map[*commit.Partition]bool{pt: true})
		mu.Lock()
		forgotten = true
		mu.Unlock()
		// Give the scheduler its chance, then stop it.
		for j := 0; j < 10; j++ {
			e.dispatch()
		}
		cancel()
		<-done
		e.wg.Wait()
		if t.Failed() {
			return
		}
	}
}
