package consumer_test

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// counterSum sums every series of a counter family.
func counterSum(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	return counterValue(t, g, name, "", "")
}

// counterValue sums the series of a counter family whose label has value
// (every series when label is "").
func counterValue(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	return seriesSum(t, g, name, label, value, func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
}

// gaugeWith sums the series of a gauge family whose label has value (0
// when there is none).
func gaugeWith(t *testing.T, g prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	return seriesSum(t, g, name, label, value, func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
}

// seriesSum sums value(series) over the series of family name whose label
// has value (every series when label is "").
func seriesSum(t *testing.T, g prometheus.Gatherer, name, label, value string, get func(*dto.Metric) float64) float64 {
	t.Helper()
	if label == "" {
		return seriesWhere(t, g, name, nil, get)
	}
	return seriesWhere(t, g, name, map[string]string{label: value}, get)
}

// seriesWhere sums value(series) over the series of family name that have
// every label of labels.
func seriesWhere(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string, get func(*dto.Metric) float64) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			have := 0
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v == l.GetValue() {
					have++
				}
			}
			if have == len(labels) {
				sum += get(m)
			}
		}
	}
	return sum
}

// gauge reads a gauge without labels.
func gauge(t *testing.T, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

// waitFor polls cond until it holds, failing the test after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnsyncedAudiencesAppearInNoMetric: an audience the filter does not
// select changes identifiers only; no series names it, while the synced
// audiences' series exist.
func TestUnsyncedAudiencesAppearInNoMetric(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 4, Events: 2000, Seed: 3, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	all, _ := oracle(t, recs)
	var audiences []string
	for k := range all {
		if !slices.Contains(audiences, k.Audience) {
			audiences = append(audiences, k.Audience)
		}
	}
	slices.Sort(audiences)
	if len(audiences) < 2 {
		t.Fatalf("the stream has %d audiences", len(audiences))
	}
	denied := audiences[0]
	want := map[stream.ListKey]stream.Set{}
	for k, v := range all {
		if k.Audience != denied {
			want[k] = v
		}
	}
	cfg := engineConfig()
	cfg.Deny = []string{denied}
	r.produce(recs)
	m := r.start(cfg)
	r.converge(want, 30*time.Second)
	end := endOffsets(t, r.brokers)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed("pinsync-test") == end })
	m.stop(t)

	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	synced := 0
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetValue() == denied {
					t.Errorf("%s has a series for the unsynced audience %q", mf.GetName(), denied)
				}
				if l.GetName() == "audience" {
					synced++
				}
			}
		}
	}
	if synced == 0 {
		t.Error("no series names a synced audience: the check above proves nothing")
	}
}
