package control_test

import (
	"testing"
	"time"

	"github.com/pinsync/pinsync/control"
)

// TestInstancesAreFoundUntilWithdrawnOrForgotten: what one process
// announces another reads, the last announcement of a name winning; a
// withdrawn instance is gone, and ForgetInstances withdraws only those not
// seen since the given time.
func TestInstancesAreFoundUntilWithdrawnOrForgotten(t *testing.T) {
	kopts := cluster(t)
	a, b := openTopic(t, kopts), openTopic(t, kopts)
	ctx := t.Context()
	now := time.Now().Truncate(time.Second)
	for _, in := range []control.Instance{
		{Name: "pinsync-0", URL: "http://10.0.0.1:8080", Started: now.Add(-time.Hour), Seen: now.Add(-time.Hour)},
		{Name: "pinsync-0", URL: "http://10.0.0.9:8080", Started: now, Seen: now},
		{Name: "pinsync-1", URL: "http://10.0.0.2:8080", Started: now, Seen: now},
		{Name: "10.0.0.3:8080", URL: "http://10.0.0.3:8080", Started: now.Add(-2 * time.Hour), Seen: now.Add(-2 * time.Hour)},
	} {
		if err := a.Announce(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1].Name != "pinsync-0" || got[1].URL != "http://10.0.0.9:8080" || !got[1].Seen.Equal(now) {
		t.Fatalf("instances %+v; want three, pinsync-0 at its last announcement", got)
	}
	if got[0].Live(now) || !got[1].Live(now) {
		t.Errorf("live: %s %v, %s %v; want an instance seen two hours ago dead and one seen now live", got[0].Name, got[0].Live(now), got[1].Name, got[1].Live(now))
	}

	if err := a.Withdraw(ctx, "pinsync-1"); err != nil {
		t.Fatal(err)
	}
	n, err := b.ForgetInstances(ctx, now.Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("ForgetInstances: %d, %v; want the one instance seen two hours ago", n, err)
	}
	got, err = a.Instances(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "pinsync-0" {
		t.Errorf("instances after a withdrawal and a forget: %+v; want pinsync-0 alone", got)
	}
	if err := a.Announce(ctx, control.Instance{Name: "x"}); err == nil {
		t.Error("an instance without a URL was announced")
	}
}
