package lists

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

func TestLastChangeWins(t *testing.T) {
	cases := []struct {
		name   string
		ops    []op
		want   op
		adds   int
		remove int
	}{
		{"AddThenRemoveIsRemove", []op{opAdd, opRemove}, opRemove, 0, 1},
		{"RemoveThenAddIsAdd", []op{opRemove, opAdd}, opAdd, 1, 0},
		{"AddRemoveAddIsAdd", []op{opAdd, opRemove, opAdd}, opAdd, 1, 0},
		{"AddTwiceIsOneAdd", []op{opAdd, opAdd}, opAdd, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws, tr, pt := newTestWindows(100)
			for i, o := range tc.ops {
				// Some in one batch, some in separate ones.
				ws.add([]change{chg(audA, o, 7)}, ws.open(pt), t0.Add(time.Duration(i)*time.Second))
			}
			w := win(ws, audA)
			if w.entries.len() != 1 || w.entries.m()[hashN(7)].op != tc.want {
				t.Fatalf("window holds %v, want one %s", w.entries.m(), tc.want)
			}
			if w.adds != tc.adds || w.removes != tc.remove || ws.buffered != 1 {
				t.Fatalf("counts: adds %d removes %d buffered %d", w.adds, w.removes, ws.buffered)
			}
			if ws.openPending(pt) != 1 {
				t.Fatalf("pending %d, want 1: superseded changes are no longer pending", ws.openPending(pt))
			}
			if !w.oldest.Equal(t0) {
				t.Fatalf("oldest %v, want the first arrival %v", w.oldest, t0)
			}
			f, _ := ws.take(w, "interval", context.Background())
			if f.records() != 1 || (tc.want == opAdd) != (len(f.adds) == 1) {
				t.Fatalf("flight adds %d removes %d, want one %s", len(f.adds), len(f.removes), tc.want)
			}
			ws.finish(f, allOK, false, t0.Add(interval), noBackoff)
			if !tr.Idle(pt) || ws.buffered != 0 {
				t.Fatalf("after the flush: idle %v buffered %d", tr.Idle(pt), ws.buffered)
			}
		})
	}
}

// TestLastChangeWinsWithinABatch: one batch holding several changes to a
// record keeps only the last.
func TestLastChangeWinsWithinABatch(t *testing.T) {
	ws, _, pt := newTestWindows(100)
	ws.add([]change{chg(audA, opAdd, 1), chg(audA, opAdd, 2), chg(audA, opRemove, 1)}, ws.open(pt), t0)
	w := win(ws, audA)
	if w.entries.m()[hashN(1)].op != opRemove || w.adds != 1 || w.removes != 1 || ws.buffered != 2 || ws.openPending(pt) != 2 {
		t.Fatalf("entries %v adds %d removes %d buffered %d pending %d", w.entries.m(), w.adds, w.removes, ws.buffered, ws.openPending(pt))
	}
}

func TestDueOrder(t *testing.T) {
	ws, _, pt := newTestWindows(3)
	pk := ws.open(pt)
	// Window 1: old (t0). Window 2: older (t0-1s). Window 3: full, young.
	// Window 4: urgent, young, tiny. Window 5: young, not due.
	ws.add(changesTo(1, opAdd, 0, 1), pk, t0)
	ws.add(changesTo(2, opAdd, 10, 2), pk, t0.Add(-time.Second))
	ws.add(changesTo(3, opRemove, 20, 3), pk, t0.Add(interval))
	ws.add(changesTo(4, opAdd, 30, 1), pk, t0.Add(interval))
	ws.add(changesTo(5, opAdd, 40, 2), pk, t0.Add(interval))
	win(ws, 4).urgent = true

	now := t0.Add(interval)
	got := keysOf(ws.due(now, interval, 100, 100))
	if want := []uint32{4, 3, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("due at t0+interval: %v, want urgent, full, then oldest first: %v", got, want)
	}
	// Just before the interval only the urgent and the full ones are due.
	got = keysOf(ws.due(t0.Add(interval-time.Nanosecond), interval, 100, 100))
	if want := []uint32{4, 3, 2}; !slices.Equal(got, want) {
		t.Fatalf("due just before window 1's interval: %v, want %v", got, want)
	}
	// A window is due exactly when its oldest change has waited interval.
	got = keysOf(ws.due(t0.Add(-time.Second+interval-time.Nanosecond), interval, 100, 100))
	if want := []uint32{4, 3}; !slices.Equal(got, want) {
		t.Fatalf("due before any interval: %v, want %v", got, want)
	}
}

// TestDueBudget: windows beyond the write budget are not flushed; they keep
// filling, and are flushed later in fewer, fuller calls.
func TestDueBudget(t *testing.T) {
	ws, _, pt := newTestWindows(1000)
	pk := ws.open(pt)
	ws.add(append(changesTo(1, opAdd, 0, 5), changesTo(1, opRemove, 5, 5)...), pk, t0) // 2 calls, oldest
	ws.add(changesTo(2, opAdd, 100, 5), pk, t0.Add(time.Second))                       // 1 call
	ws.add(changesTo(3, opRemove, 200, 5), pk, t0.Add(2*time.Second))                  // 1 call
	now := t0.Add(interval + 2*time.Second)

	if got := ws.due(now, interval, 0, 10); len(got) != 0 {
		t.Fatalf("with no budget %v are due", keysOf(got))
	}
	// One call of budget: the oldest window needs two, so nothing younger
	// jumps the queue either.
	if got := ws.due(now, interval, 1.9, 10); len(got) != 0 {
		t.Fatalf("with budget for one call %v are due", keysOf(got))
	}
	if got := keysOf(ws.due(now, interval, 3, 10)); !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("with budget for three calls: %v, want [1 2]", got)
	}
	if got := keysOf(ws.due(now, interval, 4, 10)); !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("with budget for four calls: %v, want [1 2 3]", got)
	}
	// The flight limit also bounds the windows taken.
	if got := keysOf(ws.due(now, interval, 100, 1)); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("with one free flight: %v, want [1]", got)
	}
	// Window 3 waits beyond the budget and keeps filling: when it is
	// flushed, all its records go in one call.
	ws.add(changesTo(3, opRemove, 205, 20), pk, now)
	w := win(ws, 3)
	if !w.oldest.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("a waiting window keeps its age, oldest %v", w.oldest)
	}
	f, _ := ws.take(w, "interval", context.Background())
	if len(f.removes) != 25 || w.calls() != 0 {
		t.Fatalf("the flush took %d removes, %d calls left", len(f.removes), w.calls())
	}
}

// TestTakeRespectsTheRequestMaximum: a flight holds at most the per-request
// maximum of adds and of removes; the rest stays, keeps its age and is due
// after the flight, being full or old.
func TestTakeRespectsTheRequestMaximum(t *testing.T) {
	ws, tr, pt := newTestWindows(4)
	pk := ws.open(pt)
	ws.add(append(changesTo(1, opAdd, 0, 9), changesTo(1, opRemove, 100, 5)...), pk, t0)
	w := win(ws, 1)
	if got := keysOf(ws.due(t0, interval, 100, 100)); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("a full window is due at once: %v", got)
	}
	f, _ := ws.take(w, "full", context.Background())
	if len(f.adds) != 4 || len(f.removes) != 4 || len(f.meta) != 8 {
		t.Fatalf("flight: %d adds, %d removes, %d meta; want 4, 4, 8", len(f.adds), len(f.removes), len(f.meta))
	}
	for i, m := range f.meta {
		if want := opAdd; i >= len(f.adds) {
			want = opRemove
			if m.op != want {
				t.Fatalf("meta %d is %s, want %s", i, m.op, want)
			}
		} else if m.op != want {
			t.Fatalf("meta %d is %s, want %s", i, m.op, want)
		}
	}
	if w.adds != 5 || w.removes != 1 || w.entries.len() != 6 || !w.oldest.Equal(t0) {
		t.Fatalf("left behind: adds %d removes %d entries %d oldest %v", w.adds, w.removes, w.entries.len(), w.oldest)
	}
	if got := ws.due(t0.Add(time.Hour), interval, 100, 100); len(got) != 0 {
		t.Fatalf("a window with a flight in progress is due: %v", keysOf(got))
	}
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	if ws.openPending(pt) != 6 || ws.buffered != 6 {
		t.Fatalf("after the flight: pending %d buffered %d, want 6", ws.openPending(pt), ws.buffered)
	}
	// Still full of adds (5 > 4): due at once.
	if got := ws.due(t0.Add(time.Second), interval, 100, 100); len(got) != 1 {
		t.Fatal("the full remainder is not due at once")
	}
	f, _ = ws.take(w, "interval", context.Background())
	if len(f.adds) != 4 || len(f.removes) != 1 {
		t.Fatalf("second flight: %d adds, %d removes; want 4 and 1", len(f.adds), len(f.removes))
	}
	ws.finish(f, allOK, false, t0.Add(2*time.Second), noBackoff)
	// One add left: not full, due when the oldest change (t0) waited
	// interval.
	if got := ws.due(t0.Add(interval-time.Nanosecond), interval, 100, 100); len(got) != 0 {
		t.Fatalf("the remainder is due before its interval: %v", keysOf(got))
	}
	if got := ws.due(t0.Add(interval), interval, 100, 100); len(got) != 1 {
		t.Fatalf("the remainder is not due at its interval")
	}
	f, _ = ws.take(w, "interval", context.Background())
	ws.finish(f, allOK, false, t0.Add(interval), noBackoff)
	if !tr.Idle(pt) || ws.buffered != 0 || w.entries.len() != 0 {
		t.Fatalf("not drained: idle %v buffered %d", tr.Idle(pt), ws.buffered)
	}
}

// TestFailedFlushPutsRecordsBack: records of a failed flight return to the
// window (still pending), are not due before the backoff, and are due after.
func TestFailedFlushPutsRecordsBack(t *testing.T) {
	ws, tr, pt := newTestWindows(100)
	pk := ws.open(pt)
	ws.add(append(changesTo(1, opAdd, 0, 3), changesTo(1, opRemove, 3, 2)...), pk, t0)
	w := win(ws, 1)
	f, _ := ws.take(w, "interval", context.Background())
	if n := ws.finish(f, noneOK, true, t0.Add(interval), fixedBackoff(time.Second)); n != 0 {
		t.Fatalf("finish reported %d records done", n)
	}
	if w.adds != 3 || w.removes != 2 || ws.buffered != 5 || ws.openPending(pt) != 5 || tr.Idle(pt) {
		t.Fatalf("after failure: adds %d removes %d buffered %d pending %d", w.adds, w.removes, ws.buffered, ws.openPending(pt))
	}
	for n := 0; n < 5; n++ {
		if e, ok := w.entries.m()[hashN(n)]; !ok || e.pk != pk {
			t.Fatalf("record %d not back with its epoch: %v", n, e)
		}
	}
	if got := ws.due(t0.Add(interval+time.Second-time.Nanosecond), interval, 100, 100); len(got) != 0 {
		t.Fatal("a failed window is due before its backoff")
	}
	if got := ws.due(t0.Add(interval+time.Second), interval, 100, 100); len(got) != 1 {
		t.Fatal("a failed window is not due after its backoff")
	}
	// Adds succeeded, removes failed: only the removes come back.
	f, _ = ws.take(w, "interval", context.Background())
	n := ws.finish(f, func(i int) bool { return i < len(f.adds) }, true, t0.Add(2*interval), noBackoff)
	if n != 3 || w.adds != 0 || w.removes != 2 || ws.buffered != 2 || ws.openPending(pt) != 2 {
		t.Fatalf("after partial failure: done %d adds %d removes %d buffered %d pending %d", n, w.adds, w.removes, ws.buffered, ws.openPending(pt))
	}
}

// TestFailedFlushYieldsToNewerChanges: a record whose flight failed does not
// come back when a newer change to it arrived meanwhile; the newer change
// is what is pending.
func TestFailedFlushYieldsToNewerChanges(t *testing.T) {
	ws, tr, pt := newTestWindows(100)
	first := ws.open(pt)
	ws.add([]change{chg(1, opAdd, 1), chg(1, opAdd, 2)}, first, t0)
	w := win(ws, 1)
	f, _ := ws.take(w, "interval", context.Background())
	tr.Seal(pt, 10, 0)
	second := ws.open(pt)
	ws.add([]change{chg(1, opRemove, 1)}, second, t0.Add(time.Second))
	ws.finish(f, noneOK, true, t0.Add(2*time.Second), noBackoff)
	if e := w.entries.m()[hashN(1)]; e.op != opRemove || e.pk != second {
		t.Fatalf("record 1 is %v, want the newer remove", e)
	}
	if e := w.entries.m()[hashN(2)]; e.op != opAdd || e.pk != first {
		t.Fatalf("record 2 is %v, want its add back", e)
	}
	if w.adds != 1 || w.removes != 1 || ws.buffered != 2 {
		t.Fatalf("adds %d removes %d buffered %d", w.adds, w.removes, ws.buffered)
	}
	if ws.sealedPending(pt)[0] != 1 || ws.openPending(pt) != 1 {
		t.Fatalf("pending: first epoch %d, open %d; want 1 and 1", ws.sealedPending(pt)[0], ws.openPending(pt))
	}
}

// TestFlushesOfAWindowAreOrdered: while a window has a flight in progress
// it is never due, however full, old or urgent, so a newer change never
// overtakes an older one at Pinterest.
func TestFlushesOfAWindowAreOrdered(t *testing.T) {
	ws, _, pt := newTestWindows(2)
	pk := ws.open(pt)
	ws.add([]change{chg(1, opAdd, 1)}, pk, t0)
	w := win(ws, 1)
	f, _ := ws.take(w, "interval", context.Background())
	ws.add([]change{chg(1, opRemove, 1), chg(1, opRemove, 2), chg(1, opRemove, 3)}, pk, t0)
	ws.markUrgent(nil)
	if got := ws.due(t0.Add(time.Hour), interval, 100, 100); len(got) != 0 {
		t.Fatalf("a window with a flight in progress is due: %v", keysOf(got))
	}
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	if got := keysOf(ws.due(t0.Add(time.Second), interval, 100, 100)); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("after the flight the urgent window is not due: %v", got)
	}
}

// TestDroppedPartitionIsNotPutBack: a flight that fails after its partition
// was dropped does not put the partition's records back, and counts
// nothing against the dropped partition.
func TestDroppedPartitionIsNotPutBack(t *testing.T) {
	ws, tr, pt := newTestWindows(100)
	other := tr.Assign("events", 1, -1)
	ws.add([]change{chg(1, opAdd, 1)}, ws.open(pt), t0)
	ws.add([]change{chg(1, opAdd, 2)}, ws.open(other), t0)
	w := win(ws, 1)
	f, _ := ws.take(w, "revoke", context.Background())
	ws.add([]change{chg(1, opAdd, 3)}, ws.open(pt), t0)
	tr.Remove(pt)
	ws.drop(map[*commit.Partition]bool{pt: true})
	ws.finish(f, noneOK, true, t0, noBackoff)
	if w.entries.len() != 1 || w.entries.m()[hashN(2)].pk.P != other || ws.buffered != 1 || ws.openPending(other) != 1 {
		t.Fatalf("entries %v buffered %d other pending %d", w.entries.m(), ws.buffered, ws.openPending(other))
	}
}

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
		e, tw, pt, aud := newSchedStage(t, ctx, max, pin)
		done := make(chan struct{})
		go func() { defer close(done); e.schedule(ctx) }()
		seen := func() []call {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(calls)
		}

		start := time.Now()
		tw.add(changesTo(aud, opAdd, 0, 3), tw.open(pt), e.now())
		time.Sleep(interval / 2)
		tw.add(changesTo(aud, opAdd, 3, 3), tw.open(pt), e.now())
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
		if !e.tr.Idle(pt) || !e.ws.empty() {
			t.Fatal("the flushed changes are still pending")
		}

		// The per-request maximum flushes at once, without waiting.
		start = time.Now()
		tw.add(changesTo(aud, opRemove, 100, max+1), tw.open(pt), e.now())
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
		e.flightWG.Wait()
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
		e, tw, pt, aud := newSchedStage(t, ctx, 2, pin)
		done := make(chan struct{})
		go func() { defer close(done); e.schedule(ctx) }()
		pk := tw.open(pt)
		tw.add([]change{chg(aud, opAdd, 1), chg(aud, opAdd, 2)}, pk, e.now())
		synctest.Wait()
		// The record is removed while its add is in flight; the window is
		// full again.
		tw.add([]change{chg(aud, opRemove, 1), chg(aud, opRemove, 3)}, pk, e.now())
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
		if !e.tr.Idle(pt) || !e.ws.empty() {
			t.Fatal("changes still pending")
		}
		cancel()
		<-done
		e.flightWG.Wait()
	})
}

// TestDispatchDoesNotRaceWithWorkers: the scheduler decides why a window is
// flushed while workers keep adding to it; run with -race.
func TestDispatchDoesNotRaceWithWorkers(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pin := pinFunc(func(context.Context, pinterest.Operation, []ident.Hash) error { return nil })
	e, tw, pt, aud := newSchedStage(t, ctx, 2, pin)
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
			tw.add(changesTo(aud, opAdd, 2*i, 2), tw.open(pt), e.now())
			tw.add(changesTo(aud2, opRemove, 2*i, 2), tw.open(pt), e.now())
		}
	}()
	for i := 0; i < 20000; i++ {
		e.dispatch()
	}
	close(stop)
	<-added
	e.flightWG.Wait()
}

// TestUrgencyOutlivesAPartialFlush: a window asked to flush (revoke,
// shutdown) holding more than one request's worth stays urgent until it is
// empty, so its remainder does not wait for the flush interval.
func TestUrgencyOutlivesAPartialFlush(t *testing.T) {
	ws, _, pt := newTestWindows(2)
	ws.add(changesTo(1, opAdd, 0, 3), ws.open(pt), t0)
	ws.markUrgent(map[*commit.Partition]bool{pt: true})
	w := win(ws, 1)
	f, _ := ws.take(w, "revoke", context.Background())
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	if got := ws.due(t0.Add(time.Second), interval, 100, 100); len(got) != 1 {
		t.Fatal("the remainder of an urgent window waits for the flush interval")
	}
	f, _ = ws.take(w, "revoke", context.Background())
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	ws.add(changesTo(1, opAdd, 10, 1), ws.open(pt), t0.Add(time.Second))
	if got := ws.due(t0.Add(2*time.Second), interval, 100, 100); len(got) != 0 {
		t.Fatal("a window emptied by its urgent flushes is still urgent for new changes")
	}
}

// TestFailedUrgentFlushRetriesAfterBackoff: when the flush of a window
// asked to flush fails, it is retried after the backoff, not after the
// flush interval (which may exceed the revoke timeout).
func TestFailedUrgentFlushRetriesAfterBackoff(t *testing.T) {
	ws, _, pt := newTestWindows(100)
	ws.add(changesTo(1, opAdd, 0, 3), ws.open(pt), t0)
	ws.markUrgent(nil)
	w := win(ws, 1)
	f, _ := ws.take(w, "revoke", context.Background())
	ws.finish(f, noneOK, true, t0.Add(time.Second), fixedBackoff(time.Second))
	if got := ws.due(t0.Add(2*time.Second-time.Nanosecond), interval, 100, 100); len(got) != 0 {
		t.Fatal("due before the backoff")
	}
	if got := ws.due(t0.Add(2*time.Second), interval, 100, 100); len(got) != 1 {
		t.Fatal("a failed urgent window is not retried after its backoff")
	}
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
		e, tw, pt, _ := newSchedStage(t, ctx, 1000, pin)
		for a := 0; a < 20; a++ {
			aud := e.resolvedList(fmt.Sprint("aud", a))
			tw.add(changesTo(aud, opAdd, 0, 3), tw.open(pt), e.now())
		}
		done := make(chan struct{})
		go func() { defer close(done); e.schedule(ctx) }()
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
		e.flightWG.Wait()
		if t.Failed() {
			return
		}
	}
}
