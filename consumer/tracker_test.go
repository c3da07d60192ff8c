package consumer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pinsync/pinsync/schemas/ident"
)

// commitAt returns the offset a commit of p would take now (-1: none) and
// pops the completed epochs, as the committer does.
func commitAt(tr *tracker, p *partTrack) int64 {
	last, _ := tr.completed(p)
	if last == nil {
		return -1
	}
	return last.next
}

// TestCommitIsTheNewestEpochWithEverythingBeforeUploaded: epochs complete in
// order; a finished later epoch waits for an earlier one still pending.
func TestCommitIsTheNewestEpochWithEverythingBeforeUploaded(t *testing.T) {
	ws, tr, pt := newTestWindows(100)
	// Epoch 1 (offsets up to 10): records 1 and 2 in window 1.
	ws.add([]change{chg(1, opAdd, 1), chg(1, opAdd, 2)}, pendKey{pt, pt.open}, t0)
	tr.seal(pt, 10, 0, nil)
	// Epoch 2 (up to 20): no change (every record filtered or a no-op).
	tr.seal(pt, 20, 0, nil)
	// Epoch 3 (up to 30): record 3 in window 2.
	ws.add([]change{chg(2, opRemove, 3)}, pendKey{pt, pt.open}, t0)
	tr.seal(pt, 30, 0, nil)
	// Epoch 4 (open): record 4 in window 2.
	ws.add([]change{chg(2, opAdd, 4)}, pendKey{pt, pt.open}, t0)

	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("committable %d before any upload", c)
	}
	// Window 2 flushes first: epoch 3 is done but epoch 1 is not.
	f2, _ := ws.take(win(ws, 2), "interval", context.Background())
	ws.finish(f2, allOK, false, t0, noBackoff)
	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("committable %d while epoch 1 is still pending", c)
	}
	// Window 1 flushes: epochs 1, 2 and 3 are done; epoch 4 is open and
	// its change uploaded, but an open epoch is never committed.
	f1, _ := ws.take(win(ws, 1), "interval", context.Background())
	ws.finish(f1, allOK, false, t0, noBackoff)
	if c := commitAt(tr, pt); c != 30 {
		t.Fatalf("committable %d, want 30 (the newest sealed epoch)", c)
	}
	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("the completed epochs were not popped: %d again", c)
	}
	tr.seal(pt, 40, 0, nil)
	if c := commitAt(tr, pt); c != 40 {
		t.Fatalf("committable %d, want 40", c)
	}
}

// TestCommitNeverRunsAheadOfAnUpload: while a flight holding an epoch's
// change is in progress, or after it failed, the epoch is not committable.
func TestCommitNeverRunsAheadOfAnUpload(t *testing.T) {
	ws, tr, pt := newTestWindows(100)
	ws.add([]change{chg(1, opAdd, 1), chg(1, opRemove, 2)}, pendKey{pt, pt.open}, t0)
	tr.seal(pt, 5, 0, nil)
	f, _ := ws.take(win(ws, 1), "interval", context.Background())
	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("committable %d while its upload is in flight", c)
	}
	// Adds went through, removes failed.
	ws.finish(f, func(i int) bool { return i < len(f.adds) }, true, t0, noBackoff)
	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("committable %d after the upload of one of its changes failed", c)
	}
	f, _ = ws.take(win(ws, 1), "interval", context.Background())
	ws.finish(f, allOK, false, t0, noBackoff)
	if c := commitAt(tr, pt); c != 5 {
		t.Fatalf("committable %d after every upload, want 5", c)
	}
}

// TestSupersededChangesMovePendingCounts: a change replaced in its window by
// a newer one stops counting for its epoch and the newer one counts for its
// own; so an epoch whose every change was superseded completes without an
// upload, and the newer epoch waits for the upload of the newer change.
func TestSupersededChangesMovePendingCounts(t *testing.T) {
	t.Run("InTheWindow", func(t *testing.T) {
		ws, tr, pt := newTestWindows(100)
		ws.add([]change{chg(1, opAdd, 1), chg(1, opAdd, 2)}, pendKey{pt, pt.open}, t0)
		tr.seal(pt, 10, 0, nil)
		ws.add([]change{chg(1, opRemove, 1)}, pendKey{pt, pt.open}, t0)
		if pt.sealed[0].pending != 1 || pt.openPending != 1 {
			t.Fatalf("pending: sealed %d open %d, want 1 and 1", pt.sealed[0].pending, pt.openPending)
		}
		ws.add([]change{chg(1, opRemove, 2)}, pendKey{pt, pt.open}, t0)
		if c := commitAt(tr, pt); c != 10 {
			t.Fatalf("every change of epoch 1 was superseded, committable %d, want 10", c)
		}
		tr.seal(pt, 20, 0, nil)
		if c := commitAt(tr, pt); c != -1 {
			t.Fatalf("committable %d before the newer changes are uploaded", c)
		}
		f, _ := ws.take(win(ws, 1), "interval", context.Background())
		ws.finish(f, allOK, false, t0, noBackoff)
		if c := commitAt(tr, pt); c != 20 || !tr.idle(pt) {
			t.Fatalf("committable %d (want 20), idle %v", c, tr.idle(pt))
		}
	})
	t.Run("InTheOpenEpoch", func(t *testing.T) {
		ws, _, pt := newTestWindows(100)
		pk := pendKey{pt, pt.open}
		for i := 0; i < 5; i++ {
			ws.add([]change{chg(1, op(i%2+1), 1)}, pk, t0)
		}
		if pt.openPending != 1 {
			t.Fatalf("open pending %d after five changes to one record, want 1", pt.openPending)
		}
	})
	t.Run("WhileInFlight", func(t *testing.T) {
		// The flight's copy still counts until it ends; when it fails, the
		// newer change stays and the older stops counting.
		ws, tr, pt := newTestWindows(100)
		ws.add([]change{chg(1, opAdd, 1)}, pendKey{pt, pt.open}, t0)
		tr.seal(pt, 10, 0, nil)
		f, _ := ws.take(win(ws, 1), "interval", context.Background())
		ws.add([]change{chg(1, opRemove, 1)}, pendKey{pt, pt.open}, t0)
		if pt.sealed[0].pending != 1 || pt.openPending != 1 || ws.buffered != 2 {
			t.Fatalf("pending: sealed %d open %d buffered %d", pt.sealed[0].pending, pt.openPending, ws.buffered)
		}
		ws.finish(f, noneOK, true, t0, noBackoff)
		if c := commitAt(tr, pt); c != 10 {
			t.Fatalf("committable %d, want 10: the failed add was superseded", c)
		}
		if pt.openPending != 1 || ws.buffered != 1 {
			t.Fatalf("open pending %d buffered %d, want 1 and 1", pt.openPending, ws.buffered)
		}
	})
}

// TestDeadLetterHoldsItsEpoch: a record on its way to the dead-letter topic
// counts as pending until the broker acknowledged it.
func TestDeadLetterHoldsItsEpoch(t *testing.T) {
	tr := newTracker()
	pt := tr.assign(partKey{"events", 0}, -1)
	pk := pendKey{pt, pt.open}
	tr.add(map[pendKey]int{pk: 1})
	tr.seal(pt, 3, 0, nil)
	if c := commitAt(tr, pt); c != -1 || tr.idle(pt) {
		t.Fatalf("committable %d, idle %v, with a dead letter unacknowledged", c, tr.idle(pt))
	}
	tr.add(map[pendKey]int{pk: -1})
	if c := commitAt(tr, pt); c != 3 || !tr.idle(pt) {
		t.Fatalf("committable %d, idle %v, want 3", c, tr.idle(pt))
	}
}

// TestCommitsAreSafeUnderRandomFlushes drives windows and the tracker with
// a random mix of changes, seals, flushes that succeed, fail or half
// succeed, and commits, against a model of Pinterest's lists. Whenever an
// epoch is committable, every record whose last change so far is in that
// epoch or an earlier one must be at Pinterest as that change says (replay
// from the commit only regenerates changes of later records). At the end,
// with every flush succeeding, nothing stays pending.
func TestCommitsAreSafeUnderRandomFlushes(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			ws, tr, pt := newTestWindows(3)
			type rec struct {
				key windowKey
				h   ident.Hash
			}
			type last struct {
				op    op
				epoch uint32
			}
			latest := map[rec]last{}
			pinterestHas := map[rec]bool{}
			flights := map[*window]*flight{}
			var next int64
			now := t0
			for step := 0; step < 3000; step++ {
				now = now.Add(100 * time.Millisecond)
				switch r := rng.IntN(10); {
				case r < 5: // a batch of changes
					var cs []change
					for n := rng.IntN(4) + 1; n > 0; n-- {
						c := chg(uint32(rng.IntN(3)+1), op(rng.IntN(2)+1), rng.IntN(12))
						cs = append(cs, c)
						latest[rec{windowKey{c.aud, c.typ}, c.hash}] = last{c.op, pt.open}
					}
					next += int64(rng.IntN(5) + 1)
					ws.add(cs, pendKey{pt, pt.open}, now)
				case r < 6:
					tr.seal(pt, next, 0, nil)
				case r < 8: // start the due flights
					for _, w := range ws.due(now, time.Second, 1e9, 10) {
						f, _ := ws.take(w, "interval", context.Background())
						flights[w] = f
					}
				default: // end a flight
					for w, f := range flights {
						var ok func(int) bool
						failed := true
						switch rng.IntN(3) {
						case 0:
							ok, failed = allOK, false
						case 1:
							ok = noneOK
						default:
							ok = func(i int) bool { return i < len(f.adds) }
						}
						for i, m := range f.meta {
							if ok(i) {
								pinterestHas[rec{w.key, f.hash(i)}] = m.op == opAdd
							}
						}
						ws.finish(f, ok, failed, now, noBackoff)
						delete(flights, w)
						break
					}
				}
				if m, _ := tr.completed(pt); m != nil {
					for k, l := range latest {
						if l.epoch <= m.epoch && pinterestHas[k] != (l.op == opAdd) {
							t.Fatalf("step %d: epoch %d (next %d) committable but record %v is not at Pinterest as its last change %s of epoch %d says",
								step, m.epoch, m.next, k.h.String()[:8], l.op, l.epoch)
						}
					}
				}
			}
			// Drain: every flight and every window succeeds.
			tr.seal(pt, next, 0, nil)
			for w, f := range flights {
				ws.finish(f, allOK, false, now, noBackoff)
				delete(flights, w)
			}
			for i := 0; !ws.empty(); i++ {
				if i > 1000 {
					t.Fatal("windows never drained")
				}
				now = now.Add(time.Second)
				for _, w := range ws.due(now, time.Second, 1e9, 10) {
					f, _ := ws.take(w, "interval", context.Background())
					ws.finish(f, allOK, false, now, noBackoff)
				}
			}
			if !tr.idle(pt) || pt.openPending != 0 {
				t.Fatalf("pending counts leaked: open %d, sealed %d", pt.openPending, len(pt.sealed))
			}
			tr.completed(pt)
			if len(pt.sealed) != 0 {
				t.Fatalf("%d sealed epochs never completed", len(pt.sealed))
			}
		})
	}
}
