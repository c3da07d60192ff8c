package window

import (
	"context"
	"testing"

	"github.com/pinsync/pinsync/consumer/commit"
)

// TestReturningChangesCancel: within a window, a vouched change that brings
// a record back to where the list stood before the window leaves nothing to
// send; a change the state cannot vouch for never cancels.
func TestReturningChangesCancel(t *testing.T) {
	cases := []struct {
		name    string
		changes []change
		want    map[op]int // records left by op
	}{
		{"AddThenRemoveOfANewRecordCancels", []change{vouched(1, opAdd, 0), vouched(1, opRemove, 0)}, map[op]int{}},
		{"RemoveThenAddOfAHeldRecordCancels", []change{vouched(1, opRemove, 0), vouched(1, opAdd, 0)}, map[op]int{}},
		{"AddRemoveAddIsOneAdd", []change{vouched(1, opAdd, 0), vouched(1, opRemove, 0), vouched(1, opAdd, 0)}, map[op]int{opAdd: 1}},
		{"UnvouchedRemoveThenAddIsAdd", []change{chg(1, opRemove, 0), vouched(1, opAdd, 0)}, map[op]int{opAdd: 1}},
		{"VouchedAddThenUnvouchedRemoveIsRemove", []change{vouched(1, opAdd, 0), chg(1, opRemove, 0)}, map[op]int{opRemove: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ws, _, pt := newTestWindows(100)
			for _, c := range tc.changes {
				ws.add([]change{c}, commit.Key{P: pt, Epoch: 1}, t0)
			}
			got := map[op]int{}
			if w := win(ws, 1); w != nil {
				for _, e := range w.entries.m() {
					got[e.op]++
				}
			}
			if len(got) != len(tc.want) || got[opAdd] != tc.want[opAdd] || got[opRemove] != tc.want[opRemove] {
				t.Fatalf("window holds %v, want %v", got, tc.want)
			}
			n := tc.want[opAdd] + tc.want[opRemove]
			if ws.buffered != n || ws.openPending(pt) != n {
				t.Fatalf("buffered %d, pending %d, want %d", ws.buffered, ws.openPending(pt), n)
			}
		})
	}
}

// TestCancelKeepsAFlightInForce: a record whose add is in flight and is
// then removed and added again ends in the list whether the flight
// succeeds or fails.
func TestCancelKeepsAFlightInForce(t *testing.T) {
	for _, fails := range []bool{false, true} {
		ws, _, pt := newTestWindows(100)
		pk := commit.Key{P: pt, Epoch: 1}
		ws.add([]change{vouched(1, opAdd, 0)}, pk, t0)
		f, _ := ws.Take(win(ws, 1), "interval", context.Background())
		ws.add([]change{vouched(1, opRemove, 0)}, pk, t0)
		ws.add([]change{vouched(1, opAdd, 0)}, pk, t0)
		if n := win(ws, 1).entries.len(); n != 0 {
			t.Fatalf("remove then add during the flight left %d entries", n)
		}
		ok := allOK
		if fails {
			ok = noneOK
		}
		ws.finish(f, ok, fails, t0, noBackoff)
		w := win(ws, 1)
		if fails {
			if e, held := w.entries.m()[hashN(0)]; !held || e.op != opAdd {
				t.Fatalf("a failed add must come back into the window, got %v", w.entries.m())
			}
		} else if w.entries.len() != 0 || ws.openPending(pt) != 0 {
			t.Fatalf("after a successful flight: entries %v, pending %d", w.entries.m(), ws.openPending(pt))
		}
	}
}

// TestFailedFlightMakesTheListUnknown: a request that failed may or may not
// have reached Pinterest, so neither the records it puts back nor a newer
// change to them may cancel afterwards: a record whose add failed, then
// removed and added again, is sent as an add.
func TestFailedFlightMakesTheListUnknown(t *testing.T) {
	t.Run("NewerChange", func(t *testing.T) {
		ws, _, pt := newTestWindows(100)
		pk := commit.Key{P: pt, Epoch: 1}
		ws.add([]change{vouched(1, opAdd, 0)}, pk, t0)
		f, _ := ws.Take(win(ws, 1), "interval", context.Background())
		ws.add([]change{vouched(1, opRemove, 0)}, pk, t0) // newer than the flight
		ws.finish(f, noneOK, true, t0, noBackoff)
		ws.add([]change{vouched(1, opAdd, 0)}, pk, t0)
		if e, held := win(ws, 1).entries.m()[hashN(0)]; !held || e.op != opAdd {
			t.Fatalf("the add after a failed flight must be sent, window holds %v", win(ws, 1).entries.m())
		}
	})
	t.Run("PutBack", func(t *testing.T) {
		ws, _, pt := newTestWindows(100)
		pk := commit.Key{P: pt, Epoch: 1}
		ws.add([]change{vouched(1, opRemove, 0)}, pk, t0)
		f, _ := ws.Take(win(ws, 1), "interval", context.Background())
		ws.finish(f, noneOK, true, t0, noBackoff) // the remove comes back
		ws.add([]change{vouched(1, opAdd, 0)}, pk, t0)
		if e, held := win(ws, 1).entries.m()[hashN(0)]; !held || e.op != opAdd {
			t.Fatalf("an add after a failed remove must be sent, window holds %v", win(ws, 1).entries.m())
		}
	})
}
