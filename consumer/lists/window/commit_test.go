package window

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pinsync/pinsync/schemas/ident"
)

// TestCommitIsTheNewestEpochWithEverythingBeforeUploaded: epochs complete in
// order; a finished later epoch waits for an earlier one still pending.
func TestCommitIsTheNewestEpochWithEverythingBeforeUploaded(t *testing.T) {
	ws, tr, pt := newTestWindows(100)
	// Epoch 1 (offsets up to 10): records 1 and 2 in window 1.
	ws.add([]change{chg(1, opAdd, 1), chg(1, opAdd, 2)}, ws.open(pt), t0)
	tr.Seal(pt, 10, 0)
	// Epoch 2 (up to 20): no change (every record filtered or a no-op).
	tr.Seal(pt, 20, 0)
	// Epoch 3 (up to 30): record 3 in window 2.
	ws.add([]change{chg(2, opRemove, 3)}, ws.open(pt), t0)
	tr.Seal(pt, 30, 0)
	// Epoch 4 (open): record 4 in window 2.
	ws.add([]change{chg(2, opAdd, 4)}, ws.open(pt), t0)

	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("committable %d before any upload", c)
	}
	// Window 2 flushes first: epoch 3 is done but epoch 1 is not.
	f2, _ := ws.Take(win(ws, 2), "interval", context.Background())
	ws.finish(f2, allOK, false, t0, noBackoff)
	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("committable %d while epoch 1 is still pending", c)
	}
	// Window 1 flushes: epochs 1, 2 and 3 are done; epoch 4 is open and
	// its change uploaded, but an open epoch is never committed.
	f1, _ := ws.Take(win(ws, 1), "interval", context.Background())
	ws.finish(f1, allOK, false, t0, noBackoff)
	if c := commitAt(tr, pt); c != 30 {
		t.Fatalf("committable %d, want 30 (the newest sealed epoch)", c)
	}
	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("the completed epochs were not popped: %d again", c)
	}
	tr.Seal(pt, 40, 0)
	if c := commitAt(tr, pt); c != 40 {
		t.Fatalf("committable %d, want 40", c)
	}
}

// TestCommitNeverRunsAheadOfAnUpload: while a flight holding an epoch's
// change is in progress, or after it failed, the epoch is not committable.
func TestCommitNeverRunsAheadOfAnUpload(t *testing.T) {
	ws, tr, pt := newTestWindows(100)
	ws.add([]change{chg(1, opAdd, 1), chg(1, opRemove, 2)}, ws.open(pt), t0)
	tr.Seal(pt, 5, 0)
	f, _ := ws.Take(win(ws, 1), "interval", context.Background())
	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("committable %d while its upload is in flight", c)
	}
	// Adds went through, removes failed.
	ws.finish(f, func(i int) bool { return i < len(f.adds) }, true, t0, noBackoff)
	if c := commitAt(tr, pt); c != -1 {
		t.Fatalf("committable %d after the upload of one of its changes failed", c)
	}
	f, _ = ws.Take(win(ws, 1), "interval", context.Background())
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
		ws.add([]change{chg(1, opAdd, 1), chg(1, opAdd, 2)}, ws.open(pt), t0)
		tr.Seal(pt, 10, 0)
		ws.add([]change{chg(1, opRemove, 1)}, ws.open(pt), t0)
		if ws.sealedPending(pt)[0] != 1 || ws.openPending(pt) != 1 {
			t.Fatalf("pending: sealed %d open %d, want 1 and 1", ws.sealedPending(pt)[0], ws.openPending(pt))
		}
		ws.add([]change{chg(1, opRemove, 2)}, ws.open(pt), t0)
		if c := commitAt(tr, pt); c != 10 {
			t.Fatalf("every change of epoch 1 was superseded, committable %d, want 10", c)
		}
		tr.Seal(pt, 20, 0)
		if c := commitAt(tr, pt); c != -1 {
			t.Fatalf("committable %d before the newer changes are uploaded", c)
		}
		f, _ := ws.Take(win(ws, 1), "interval", context.Background())
		ws.finish(f, allOK, false, t0, noBackoff)
		if c := commitAt(tr, pt); c != 20 || !tr.Idle(pt) {
			t.Fatalf("committable %d (want 20), idle %v", c, tr.Idle(pt))
		}
	})
	t.Run("InTheOpenEpoch", func(t *testing.T) {
		ws, _, pt := newTestWindows(100)
		pk := ws.open(pt)
		for i := 0; i < 5; i++ {
			ws.add([]change{chg(1, op(i%2+1), 1)}, pk, t0)
		}
		if ws.openPending(pt) != 1 {
			t.Fatalf("open pending %d after five changes to one record, want 1", ws.openPending(pt))
		}
	})
	t.Run("WhileInFlight", func(t *testing.T) {
		// The flight's copy still counts until it ends; when it fails, the
		// newer change stays and the older stops counting.
		ws, tr, pt := newTestWindows(100)
		ws.add([]change{chg(1, opAdd, 1)}, ws.open(pt), t0)
		tr.Seal(pt, 10, 0)
		f, _ := ws.Take(win(ws, 1), "interval", context.Background())
		ws.add([]change{chg(1, opRemove, 1)}, ws.open(pt), t0)
		if ws.sealedPending(pt)[0] != 1 || ws.openPending(pt) != 1 || ws.buffered != 2 {
			t.Fatalf("pending: sealed %d open %d buffered %d", ws.sealedPending(pt)[0], ws.openPending(pt), ws.buffered)
		}
		ws.finish(f, noneOK, true, t0, noBackoff)
		if c := commitAt(tr, pt); c != 10 {
			t.Fatalf("committable %d, want 10: the failed add was superseded", c)
		}
		if ws.openPending(pt) != 1 || ws.buffered != 1 {
			t.Fatalf("open pending %d buffered %d, want 1 and 1", ws.openPending(pt), ws.buffered)
		}
	})
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
				key ListID
				h   ident.Hash
			}
			type last struct {
				op    op
				epoch uint32
			}
			latest := map[rec]last{}
			pinterestHas := map[rec]bool{}
			flights := map[*Window]*Flight{}
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
						latest[rec{listOf(c.aud, c.typ), c.hash}] = last{c.op, ws.open(pt).Epoch}
					}
					next += int64(rng.IntN(5) + 1)
					ws.add(cs, ws.open(pt), now)
				case r < 6:
					tr.Seal(pt, next, 0)
				case r < 8: // start the due flights
					for _, w := range ws.Due(now, time.Second, 1e9, 10) {
						f, _ := ws.Take(w, "interval", context.Background())
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
				if m := tr.Completed(pt); m != nil {
					for k, l := range latest {
						if l.epoch <= m.Epoch && pinterestHas[k] != (l.op == opAdd) {
							t.Fatalf("step %d: epoch %d (next %d) committable but record %v is not at Pinterest as its last change %s of epoch %d says",
								step, m.Epoch, m.Next, k.h.String()[:8], l.op, l.epoch)
						}
					}
				}
			}
			// Drain: every flight and every window succeeds.
			tr.Seal(pt, next, 0)
			for w, f := range flights {
				ws.finish(f, allOK, false, now, noBackoff)
				delete(flights, w)
			}
			for i := 0; !ws.Empty(); i++ {
				if i > 1000 {
					t.Fatal("windows never drained")
				}
				now = now.Add(time.Second)
				for _, w := range ws.Due(now, time.Second, 1e9, 10) {
					f, _ := ws.Take(w, "interval", context.Background())
					ws.finish(f, allOK, false, now, noBackoff)
				}
			}
			if !tr.Idle(pt) || ws.openPending(pt) != 0 {
				t.Fatalf("pending counts leaked: open %d, sealed %d", ws.openPending(pt), len(ws.sealedPending(pt)))
			}
			tr.Completed(pt)
			if len(ws.sealedPending(pt)) != 0 {
				t.Fatalf("%d sealed epochs never completed", len(ws.sealedPending(pt)))
			}
		})
	}
}
