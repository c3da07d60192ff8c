package consumer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// t0 is the arrival time of the first change in the window tests.
var t0 = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

const interval = 10 * time.Second

// hashN is a distinct record for each n.
func hashN(n int) ident.Hash {
	var h ident.Hash
	binary.BigEndian.PutUint64(h[:], uint64(n)+1)
	return h
}

func chg(aud uint32, o op, n int) change {
	return change{aud: aud, typ: ident.Email, hash: hashN(n), op: o}
}

// changes returns n changes with op o to records first..first+n-1.
func changes(aud uint32, o op, first, n int) []change {
	out := make([]change, n)
	for i := range out {
		out[i] = chg(aud, o, first+i)
	}
	return out
}

// newTestWindows returns windows with the given per-request maximum and one
// tracked partition.
func newTestWindows(max int) (*windows, *tracker, *partTrack) {
	tr := newTracker()
	pt := tr.assign(partKey{"events", 0}, -1)
	return newWindows(tr, max), tr, pt
}

func win(ws *windows, aud uint32) *window {
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.m[windowKey{aud, ident.Email}]
}

func keysOf(ws []*window) []uint32 {
	out := make([]uint32, len(ws))
	for i, w := range ws {
		out[i] = w.key.aud
	}
	return out
}

func allOK(int) bool  { return true }
func noneOK(int) bool { return false }

func noBackoff(int) time.Duration { return 0 }

// fixedBackoff waits d whatever the number of failures.
func fixedBackoff(d time.Duration) func(int) time.Duration {
	return func(int) time.Duration { return d }
}

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
				ws.add([]change{chg(audA, o, 7)}, pendKey{pt, pt.open}, t0.Add(time.Duration(i)*time.Second))
			}
			w := win(ws, audA)
			if w.entries.len() != 1 || w.entries.m()[hashN(7)].op != tc.want {
				t.Fatalf("window holds %v, want one %s", w.entries.m(), tc.want)
			}
			if w.adds != tc.adds || w.removes != tc.remove || ws.buffered != 1 {
				t.Fatalf("counts: adds %d removes %d buffered %d", w.adds, w.removes, ws.buffered)
			}
			if pt.openPending != 1 {
				t.Fatalf("pending %d, want 1: superseded changes are no longer pending", pt.openPending)
			}
			if !w.oldest.Equal(t0) {
				t.Fatalf("oldest %v, want the first arrival %v", w.oldest, t0)
			}
			f, _ := ws.take(w, "interval", context.Background())
			if f.records() != 1 || (tc.want == opAdd) != (len(f.adds) == 1) {
				t.Fatalf("flight adds %d removes %d, want one %s", len(f.adds), len(f.removes), tc.want)
			}
			ws.finish(f, allOK, false, t0.Add(interval), noBackoff)
			if !tr.idle(pt) || ws.buffered != 0 {
				t.Fatalf("after the flush: idle %v buffered %d", tr.idle(pt), ws.buffered)
			}
		})
	}
}

// TestLastChangeWinsWithinABatch: one batch holding several changes to a
// record keeps only the last.
func TestLastChangeWinsWithinABatch(t *testing.T) {
	ws, _, pt := newTestWindows(100)
	ws.add([]change{chg(audA, opAdd, 1), chg(audA, opAdd, 2), chg(audA, opRemove, 1)}, pendKey{pt, pt.open}, t0)
	w := win(ws, audA)
	if w.entries.m()[hashN(1)].op != opRemove || w.adds != 1 || w.removes != 1 || ws.buffered != 2 || pt.openPending != 2 {
		t.Fatalf("entries %v adds %d removes %d buffered %d pending %d", w.entries.m(), w.adds, w.removes, ws.buffered, pt.openPending)
	}
}

func TestDueOrder(t *testing.T) {
	ws, _, pt := newTestWindows(3)
	pk := pendKey{pt, pt.open}
	// Window 1: old (t0). Window 2: older (t0-1s). Window 3: full, young.
	// Window 4: urgent, young, tiny. Window 5: young, not due.
	ws.add(changes(1, opAdd, 0, 1), pk, t0)
	ws.add(changes(2, opAdd, 10, 2), pk, t0.Add(-time.Second))
	ws.add(changes(3, opRemove, 20, 3), pk, t0.Add(interval))
	ws.add(changes(4, opAdd, 30, 1), pk, t0.Add(interval))
	ws.add(changes(5, opAdd, 40, 2), pk, t0.Add(interval))
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
	pk := pendKey{pt, pt.open}
	ws.add(append(changes(1, opAdd, 0, 5), changes(1, opRemove, 5, 5)...), pk, t0) // 2 calls, oldest
	ws.add(changes(2, opAdd, 100, 5), pk, t0.Add(time.Second))                     // 1 call
	ws.add(changes(3, opRemove, 200, 5), pk, t0.Add(2*time.Second))                // 1 call
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
	ws.add(changes(3, opRemove, 205, 20), pk, now)
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
	pk := pendKey{pt, pt.open}
	ws.add(append(changes(1, opAdd, 0, 9), changes(1, opRemove, 100, 5)...), pk, t0)
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
	if pt.openPending != 6 || ws.buffered != 6 {
		t.Fatalf("after the flight: pending %d buffered %d, want 6", pt.openPending, ws.buffered)
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
	if !tr.idle(pt) || ws.buffered != 0 || w.entries.len() != 0 {
		t.Fatalf("not drained: idle %v buffered %d", tr.idle(pt), ws.buffered)
	}
}

// TestFailedFlushPutsRecordsBack: records of a failed flight return to the
// window (still pending), are not due before the backoff, and are due after.
func TestFailedFlushPutsRecordsBack(t *testing.T) {
	ws, tr, pt := newTestWindows(100)
	pk := pendKey{pt, pt.open}
	ws.add(append(changes(1, opAdd, 0, 3), changes(1, opRemove, 3, 2)...), pk, t0)
	w := win(ws, 1)
	f, _ := ws.take(w, "interval", context.Background())
	if n := ws.finish(f, noneOK, true, t0.Add(interval), fixedBackoff(time.Second)); n != 0 {
		t.Fatalf("finish reported %d records done", n)
	}
	if w.adds != 3 || w.removes != 2 || ws.buffered != 5 || pt.openPending != 5 || tr.idle(pt) {
		t.Fatalf("after failure: adds %d removes %d buffered %d pending %d", w.adds, w.removes, ws.buffered, pt.openPending)
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
	if n != 3 || w.adds != 0 || w.removes != 2 || ws.buffered != 2 || pt.openPending != 2 {
		t.Fatalf("after partial failure: done %d adds %d removes %d buffered %d pending %d", n, w.adds, w.removes, ws.buffered, pt.openPending)
	}
}

// TestFailedFlushYieldsToNewerChanges: a record whose flight failed does not
// come back when a newer change to it arrived meanwhile; the newer change
// is what is pending.
func TestFailedFlushYieldsToNewerChanges(t *testing.T) {
	ws, tr, pt := newTestWindows(100)
	first := pendKey{pt, pt.open}
	ws.add([]change{chg(1, opAdd, 1), chg(1, opAdd, 2)}, first, t0)
	w := win(ws, 1)
	f, _ := ws.take(w, "interval", context.Background())
	tr.seal(pt, 10, 0, nil)
	second := pendKey{pt, pt.open}
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
	if pt.sealed[0].pending != 1 || pt.openPending != 1 {
		t.Fatalf("pending: first epoch %d, open %d; want 1 and 1", pt.sealed[0].pending, pt.openPending)
	}
}

// TestFlushesOfAWindowAreOrdered: while a window has a flight in progress
// it is never due, however full, old or urgent, so a newer change never
// overtakes an older one at Pinterest.
func TestFlushesOfAWindowAreOrdered(t *testing.T) {
	ws, _, pt := newTestWindows(2)
	pk := pendKey{pt, pt.open}
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
	other := tr.assign(partKey{"events", 1}, -1)
	ws.add([]change{chg(1, opAdd, 1)}, pendKey{pt, pt.open}, t0)
	ws.add([]change{chg(1, opAdd, 2)}, pendKey{other, other.open}, t0)
	w := win(ws, 1)
	f, _ := ws.take(w, "revoke", context.Background())
	ws.add([]change{chg(1, opAdd, 3)}, pendKey{pt, pt.open}, t0)
	tr.remove(pt)
	ws.drop(map[*partTrack]bool{pt: true})
	ws.finish(f, noneOK, true, t0, noBackoff)
	if w.entries.len() != 1 || w.entries.m()[hashN(2)].pk.part != other || ws.buffered != 1 || other.openPending != 1 {
		t.Fatalf("entries %v buffered %d other pending %d", w.entries.m(), ws.buffered, other.openPending)
	}
}

// pinFunc is a Pinterest whose list writes go to a function; every list
// and audience exists already.
type pinFunc func(ctx context.Context, op pinterest.Operation, records []ident.Hash) error

func (f pinFunc) CheckWriteAccess(context.Context, string) error { return nil }
func (f pinFunc) FindCustomerList(_ context.Context, _, name string) (pinterest.CustomerList, bool, error) {
	return pinterest.CustomerList{ID: "list-" + name, Name: name}, true, nil
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
func (f pinFunc) Audience(context.Context, string, string) (pinterest.Audience, error) {
	return pinterest.Audience{}, errors.New("unexpected read")
}

// call is one list write the fake Pinterest saw.
type call struct {
	at      time.Time
	op      pinterest.Operation
	records int
}

// newSchedEngine builds an engine (no Kafka) whose uploads go to pin, with
// one tracked partition and one audience; it returns the engine, the
// partition and the audience id.
func newSchedEngine(t *testing.T, ctx context.Context, maxRecords int, pin Pinterest) (*Engine, *partTrack, uint32) {
	t.Helper()
	e, err := New(Config{
		Topics: []string{"events"}, Group: "g", AdAccount: "549755885175",
		FlushInterval: interval, MaxRecords: maxRecords, MaxFlights: 4,
	}, Deps{Pinterest: pin})
	if err != nil {
		t.Fatal(err)
	}
	e.uploadCtx = ctx
	pt := e.tr.assign(partKey{"events", 0}, -1)
	return e, pt, e.auds.intern("aud", "", "").id
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
		e, pt, aud := newSchedEngine(t, ctx, max, pin)
		done := make(chan struct{})
		go func() { defer close(done); e.schedule(ctx) }()
		seen := func() []call {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(calls)
		}

		start := time.Now()
		e.ws.add(changes(aud, opAdd, 0, 3), pendKey{pt, pt.open}, e.now())
		time.Sleep(interval / 2)
		e.ws.add(changes(aud, opAdd, 3, 3), pendKey{pt, pt.open}, e.now())
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
		if !e.tr.idle(pt) || !e.ws.empty() {
			t.Fatal("the flushed changes are still pending")
		}

		// The per-request maximum flushes at once, without waiting.
		start = time.Now()
		e.ws.add(changes(aud, opRemove, 100, max+1), pendKey{pt, pt.open}, e.now())
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
		e, pt, aud := newSchedEngine(t, ctx, 2, pin)
		done := make(chan struct{})
		go func() { defer close(done); e.schedule(ctx) }()
		pk := pendKey{pt, pt.open}
		e.ws.add([]change{chg(aud, opAdd, 1), chg(aud, opAdd, 2)}, pk, e.now())
		synctest.Wait()
		// The record is removed while its add is in flight; the window is
		// full again.
		e.ws.add([]change{chg(aud, opRemove, 1), chg(aud, opRemove, 3)}, pk, e.now())
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
		if !e.tr.idle(pt) || !e.ws.empty() {
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
	e, pt, aud := newSchedEngine(t, ctx, 2, pin)
	aud2 := e.auds.intern("aud2", "", "").id
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
			e.ws.add(changes(aud, opAdd, 2*i, 2), pendKey{pt, pt.open}, e.now())
			e.ws.add(changes(aud2, opRemove, 2*i, 2), pendKey{pt, pt.open}, e.now())
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
	ws.add(changes(1, opAdd, 0, 3), pendKey{pt, pt.open}, t0)
	ws.markUrgent(map[*partTrack]bool{pt: true})
	w := win(ws, 1)
	f, _ := ws.take(w, "revoke", context.Background())
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	if got := ws.due(t0.Add(time.Second), interval, 100, 100); len(got) != 1 {
		t.Fatal("the remainder of an urgent window waits for the flush interval")
	}
	f, _ = ws.take(w, "revoke", context.Background())
	ws.finish(f, allOK, false, t0.Add(time.Second), noBackoff)
	ws.add(changes(1, opAdd, 10, 1), pendKey{pt, pt.open}, t0.Add(time.Second))
	if got := ws.due(t0.Add(2*time.Second), interval, 100, 100); len(got) != 0 {
		t.Fatal("a window emptied by its urgent flushes is still urgent for new changes")
	}
}

// TestFailedUrgentFlushRetriesAfterBackoff: when the flush of a window
// asked to flush fails, it is retried after the backoff, not after the
// flush interval (which may exceed the revoke timeout).
func TestFailedUrgentFlushRetriesAfterBackoff(t *testing.T) {
	ws, _, pt := newTestWindows(100)
	ws.add(changes(1, opAdd, 0, 3), pendKey{pt, pt.open}, t0)
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
		e, pt, _ := newSchedEngine(t, ctx, 1000, pin)
		for a := 0; a < 20; a++ {
			aud := e.auds.intern(fmt.Sprint("aud", a), "", "").id
			e.ws.add(changes(aud, opAdd, 0, 3), pendKey{pt, pt.open}, e.now())
		}
		done := make(chan struct{})
		go func() { defer close(done); e.schedule(ctx) }()
		e.forget(map[*partTrack]bool{pt: true})
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

// TestShutdownLeavesNoFlightBehind: when Run returns after a shutdown
// whose grace ran out, no upload is in flight and none starts later.
func TestShutdownLeavesNoFlightBehind(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 8, Events: 1000, Seed: 3, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	pcl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		pcl.Produce(t.Context(), &kgo.Record{Topic: "events", Key: r.Key, Value: r.Value, Partition: stream.Partition(r.Key, 2)}, nil)
	}
	if err := pcl.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	pcl.Close()

	var returned atomic.Bool
	var late atomic.Int32
	// Pinterest hangs until the upload is cancelled.
	pin := pinFunc(func(ctx context.Context, _ pinterest.Operation, _ []ident.Hash) error {
		if returned.Load() {
			late.Add(1)
		}
		<-ctx.Done()
		return ctx.Err()
	})
	e, err := New(Config{
		Topics: []string{"events"}, Group: "g", AdAccount: "549755885175", ChangelogTopic: "-", ControlTopic: "-",
		FlushInterval: 20 * time.Millisecond, MaxFlights: 1, ShutdownGrace: 100 * time.Millisecond,
		AudiencePollInterval: -1, CommitInterval: 20 * time.Millisecond,
	}, Deps{Kafka: []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, Pinterest: pin})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- e.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for e.Status().Buffered < 100 || e.Status().Flights == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the engine never buffered changes")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-runErr; err == nil {
		t.Fatal("Run returned nil although changes were left unuploaded")
	}
	returned.Store(true)
	if n := e.Status().Flights; n != 0 {
		t.Fatalf("%d uploads in flight after Run returned", n)
	}
	e.flightWG.Wait()
	if n := late.Load(); n != 0 {
		t.Fatalf("%d uploads started after Run returned", n)
	}
}
