package stream

import (
	"testing"
	"time"

	"github.com/pinsync/pinsync/schemas"
)

// TestMinCallsReachTheOracle checks the reference for the minimum of
// calls: its lists end where the oracle's do, no batch exceeds the
// maximum, and waiting on the clock only ever adds calls.
func TestMinCallsReachTheOracle(t *testing.T) {
	recs, _, err := Collect(Config{Events: 20_000, Seed: 3, Start: time.Unix(1_700_000_000, 0), MeanGap: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	orc, _ := BuildOracle(recs, dec, DefaultMaxIdentifiersPerType)
	want := orc.Expected()
	for k, s := range want {
		if len(s) == 0 {
			delete(want, k)
		}
	}
	backlog, _, _ := MinCalls(recs, dec, 100, 0)
	prev := backlog
	for _, flush := range []time.Duration{0, 10 * time.Second, time.Second, 100 * time.Millisecond} {
		calls, records, final := MinCalls(recs, dec, 100, flush)
		if d := Diff(want, final); !d.OK() {
			t.Fatalf("flush %s: the lists differ from the oracle: %s", flush, d)
		}
		if calls*100 < records {
			t.Errorf("flush %s: %d records in %d calls of at most 100", flush, records, calls)
		}
		if calls < prev {
			t.Errorf("flush %s: %d calls, fewer than the %d of a longer wait", flush, calls, prev)
		}
		prev = calls
	}
	if prev <= backlog {
		t.Errorf("flushing every 100ms took %d calls, no more than the backlog's %d", prev, backlog)
	}
}
