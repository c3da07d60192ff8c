package bench

import (
	"context"
	"testing"
	"time"
)

// TestRunConverges runs every stage on a small stream; it checks that the
// pipeline converged and the figures are there, never how fast.
func TestRunConverges(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end bench")
	}
	rep, err := Run(context.Background(), Options{Events: 30_000, StateProfiles: 200_000, FlushInterval: time.Second, Rekey: true, Progress: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Converged {
		t.Fatalf("did not converge: %s", rep.ConvergenceReport)
	}
	if r := rep.PipelineRekey; r == nil || !r.Converged || r.EventsPerS <= 0 || r.RatioVsPipeline <= 0 {
		t.Errorf("the run with kafka.rekey: %+v, want it converged with a positive figure", r)
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
