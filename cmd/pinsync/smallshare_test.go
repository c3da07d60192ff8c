package main

import (
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
)

// TestASmallShareFlushesAddsAndRemovesTogether: a share of the write
// budget under 120 writes a minute holds one call at a time (its bucket
// never holds two), and a list's window that carries adds and removes
// needs two. Such a window is flushed all the same, its second call
// waiting for the budget, and the lists converge with no 429.
func TestASmallShareFlushesAddsAndRemovesTogether(t *testing.T) {
	const wpm = 100
	f := newFleetWith(t, 2, sandbox.Config{WritesPerMinute: wpm, ReadsPerMinute: sandbox.Unlimited, AccessTokenTTL: time.Hour},
		fleetSettings{writesPerMinute: "100", maxRecords: "5000", flushInterval: "250ms"})
	f.start(0)
	recs, first, wantFirst := f.syncFirstHalf(31)
	want, _ := expected(t, recs)
	both := 0
	for k, s := range want {
		added, removed := false, false
		for h := range s {
			if _, ok := wantFirst[k][h]; !ok {
				added = true
			}
		}
		for h := range wantFirst[k] {
			if _, ok := s[h]; !ok {
				removed = true
			}
		}
		if added && removed {
			both++
		}
	}
	if both == 0 {
		t.Fatal("the stream's second half gives no list both adds and removes: the test checks nothing")
	}
	f.produce(recs[len(first):])
	f.waitLagZero(3 * time.Minute)
	f.exact(want)
	if _, _, limited := f.writes(); limited != 0 {
		t.Errorf("Pinterest answered 429 %d times", limited)
	}
	t.Logf("%d lists took adds and removes at once, at a share of %d writes a minute", both, wpm)
}
