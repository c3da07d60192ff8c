package bench

import (
	"context"
	"testing"
	"time"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestRunConverges runs every stage on a small stream; it checks that the
// pipeline converged and the figures are there, never how fast.
func TestRunConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end bench")
	}
	rep, err := Run(context.Background(), Options{Events: 30_000, StateProfiles: 200_000, FlushInterval: time.Second, Progress: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Converged {
		t.Fatalf("did not converge: %s", rep.ConvergenceReport)
	}
	// Every list needs a call; windows that coalesce longer than the
	// reference uploader may need fewer calls than min_possible_calls, so
	// that is a yardstick, not a bound.
	if rep.MinPossibleCalls == 0 || rep.PinterestCalls < rep.Lists {
		t.Errorf("calls %d for %d lists (reference %d)", rep.PinterestCalls, rep.Lists, rep.MinPossibleCalls)
	}
	for name, v := range map[string]float64{"pipeline": rep.PipelineEventsPerS, "drain": rep.DrainEventsPerS,
		"decode+hash": rep.DecodeHashEventsPerS, "naive": rep.NaiveEventsPerS, "state": rep.StateBytesPerProfile,
		"restore": rep.RestoreProfilesPerS} {
		if v <= 0 {
			t.Errorf("%s = %v, want a positive figure", name, v)
		}
	}
}

// TestIdealCallsReachTheOracle checks the reference for min_possible_calls:
// its lists end where the oracle's do, and no batch exceeds the maximum.
func TestIdealCallsReachTheOracle(t *testing.T) {
	recs, _, err := stream.Collect(stream.Config{Events: 20_000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	orc, _ := stream.BuildOracle(recs, dec, stream.DefaultMaxIdentifiersPerType)
	calls, records, final := idealCalls(recs, dec, 100)
	if d := stream.Diff(nonEmpty(orc.Expected()), final); !d.OK() {
		t.Fatalf("ideal lists differ from the oracle: %s", d)
	}
	if calls*100 < records {
		t.Errorf("%d records in %d calls of at most 100", records, calls)
	}
}
