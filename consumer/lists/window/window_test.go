package window

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/pinsync/pinsync/consumer/commit"
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
			f, _ := ws.Take(w, "interval", context.Background())
			if f.Records() != 1 || (tc.want == opAdd) != (len(f.adds) == 1) {
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
	got := keysOf(ws.Due(now, interval, 100, 100))
	if want := []uint32{4, 3, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("due at t0+interval: %v, want urgent, full, then oldest first: %v", got, want)
	}
	// Just before the interval only the urgent and the full ones are due.
	got = keysOf(ws.Due(t0.Add(interval-time.Nanosecond), interval, 100, 100))
	if want := []uint32{4, 3, 2}; !slices.Equal(got, want) {
		t.Fatalf("due just before window 1's interval: %v, want %v", got, want)
	}
	// A window is due exactly when its oldest change has waited interval.
	got = keysOf(ws.Due(t0.Add(-time.Second+interval-time.Nanosecond), interval, 100, 100))
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

	if got := ws.Due(now, interval, 0, 10); len(got) != 0 {
		t.Fatalf("with no budget %v are due", keysOf(got))
	}
	// One call of budget: the oldest window needs two and is taken all the
	// same (a bucket of one, a share under 120 writes a minute, never
	// holds two: its second call waits for the budget in the flight), and
	// nothing younger jumps the queue.
	if got := keysOf(ws.Due(now, interval, 1.9, 10)); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("with budget for one call: %v, want [1]", got)
	}
	if got := keysOf(ws.Due(now, interval, 1, 10)); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("with a bucket of one call: %v, want [1]", got)
	}
	if got := keysOf(ws.Due(now, interval, 3, 10)); !slices.Equal(got, []uint32{1, 2}) {
		t.Fatalf("with budget for three calls: %v, want [1 2]", got)
	}
	if got := keysOf(ws.Due(now, interval, 4, 10)); !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("with budget for four calls: %v, want [1 2 3]", got)
	}
	// The flight limit also bounds the windows taken.
	if got := keysOf(ws.Due(now, interval, 100, 1)); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("with one free flight: %v, want [1]", got)
	}
	// Window 3 waits beyond the budget and keeps filling: when it is
	// flushed, all its records go in one call.
	ws.add(changesTo(3, opRemove, 205, 20), pk, now)
	w := win(ws, 3)
	if !w.oldest.Equal(t0.Add(2 * time.Second)) {
		t.Fatalf("a waiting window keeps its age, oldest %v", w.oldest)
	}
	f, _ := ws.Take(w, "interval", context.Background())
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
	if got := keysOf(ws.Due(t0, interval, 100, 100)); !slices.Equal(got, []uint32{1}) {
		t.Fatalf("a full window is due at once: %v", got)
	}
	f, _ := ws.Take(w, "full", context.Background())
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
	if got := ws.Due(t0.Add(time.Hour), interval, 100, 100); len(got) != 0 {
		t.Fatalf("a window with a flight in progress is due: %v", keysOf(got))
	}
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	if ws.openPending(pt) != 6 || ws.buffered != 6 {
		t.Fatalf("after the flight: pending %d buffered %d, want 6", ws.openPending(pt), ws.buffered)
	}
	// Still full of adds (5 > 4): due at once.
	if got := ws.Due(t0.Add(time.Second), interval, 100, 100); len(got) != 1 {
		t.Fatal("the full remainder is not due at once")
	}
	f, _ = ws.Take(w, "interval", context.Background())
	if len(f.adds) != 4 || len(f.removes) != 1 {
		t.Fatalf("second flight: %d adds, %d removes; want 4 and 1", len(f.adds), len(f.removes))
	}
	ws.finish(f, allOK, false, t0.Add(2*time.Second), noBackoff)
	// One add left: not full, due when the oldest change (t0) waited
	// interval.
	if got := ws.Due(t0.Add(interval-time.Nanosecond), interval, 100, 100); len(got) != 0 {
		t.Fatalf("the remainder is due before its interval: %v", keysOf(got))
	}
	if got := ws.Due(t0.Add(interval), interval, 100, 100); len(got) != 1 {
		t.Fatalf("the remainder is not due at its interval")
	}
	f, _ = ws.Take(w, "interval", context.Background())
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
	f, _ := ws.Take(w, "interval", context.Background())
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
	if got := ws.Due(t0.Add(interval+time.Second-time.Nanosecond), interval, 100, 100); len(got) != 0 {
		t.Fatal("a failed window is due before its backoff")
	}
	if got := ws.Due(t0.Add(interval+time.Second), interval, 100, 100); len(got) != 1 {
		t.Fatal("a failed window is not due after its backoff")
	}
	// Adds succeeded, removes failed: only the removes come back.
	f, _ = ws.Take(w, "interval", context.Background())
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
	f, _ := ws.Take(w, "interval", context.Background())
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
	f, _ := ws.Take(w, "interval", context.Background())
	ws.add([]change{chg(1, opRemove, 1), chg(1, opRemove, 2), chg(1, opRemove, 3)}, pk, t0)
	ws.MarkUrgent(nil)
	if got := ws.Due(t0.Add(time.Hour), interval, 100, 100); len(got) != 0 {
		t.Fatalf("a window with a flight in progress is due: %v", keysOf(got))
	}
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	if got := keysOf(ws.Due(t0.Add(time.Second), interval, 100, 100)); !slices.Equal(got, []uint32{1}) {
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
	f, _ := ws.Take(w, "revoke", context.Background())
	ws.add([]change{chg(1, opAdd, 3)}, ws.open(pt), t0)
	tr.Remove(pt)
	ws.Drop(map[*commit.Partition]bool{pt: true})
	ws.finish(f, noneOK, true, t0, noBackoff)
	if w.entries.len() != 1 || w.entries.m()[hashN(2)].pk.P != other || ws.buffered != 1 || ws.openPending(other) != 1 {
		t.Fatalf("entries %v buffered %d other pending %d", w.entries.m(), ws.buffered, ws.openPending(other))
	}
}

// TestUrgencyOutlivesAPartialFlush: a window asked to flush (revoke,
// shutdown) holding more than one request's worth stays urgent until it is
// empty, so its remainder does not wait for the flush interval.
func TestUrgencyOutlivesAPartialFlush(t *testing.T) {
	ws, _, pt := newTestWindows(2)
	ws.add(changesTo(1, opAdd, 0, 3), ws.open(pt), t0)
	ws.MarkUrgent(map[*commit.Partition]bool{pt: true})
	w := win(ws, 1)
	f, _ := ws.Take(w, "revoke", context.Background())
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	if got := ws.Due(t0.Add(time.Second), interval, 100, 100); len(got) != 1 {
		t.Fatal("the remainder of an urgent window waits for the flush interval")
	}
	f, _ = ws.Take(w, "revoke", context.Background())
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	ws.add(changesTo(1, opAdd, 10, 1), ws.open(pt), t0.Add(time.Second))
	if got := ws.Due(t0.Add(2*time.Second), interval, 100, 100); len(got) != 0 {
		t.Fatal("a window emptied by its urgent flushes is still urgent for new changes")
	}
}

// TestFailedUrgentFlushRetriesAfterBackoff: when the flush of a window
// asked to flush fails, it is retried after the backoff, not after the
// flush interval (which may exceed the revoke timeout).
func TestFailedUrgentFlushRetriesAfterBackoff(t *testing.T) {
	ws, _, pt := newTestWindows(100)
	ws.add(changesTo(1, opAdd, 0, 3), ws.open(pt), t0)
	ws.MarkUrgent(nil)
	w := win(ws, 1)
	f, _ := ws.Take(w, "revoke", context.Background())
	ws.finish(f, noneOK, true, t0.Add(time.Second), fixedBackoff(time.Second))
	if got := ws.Due(t0.Add(2*time.Second-time.Nanosecond), interval, 100, 100); len(got) != 0 {
		t.Fatal("due before the backoff")
	}
	if got := ws.Due(t0.Add(2*time.Second), interval, 100, 100); len(got) != 1 {
		t.Fatal("a failed urgent window is not retried after its backoff")
	}
}
