package consumer_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestListsMatchAsPinterestMatches syncs one stream to a sandbox whose
// Pinterest users are a share of the stream's profiles, hashed by the
// sandbox's own reading of Pinterest's rules. With the identifiers in
// plaintext, every list matches about that share of its records, the IDFA
// lists like the others. With the IDFAs hashed from their lower case (the
// rule pinsync once had, sent here pre-hashed by the producer), the lists
// are just as exact and the IDFA lists match nobody. pinsync reports what
// each list holds and what Pinterest matches, and the alert rules, fed
// those very figures two days on, fire for exactly the lists that match
// nobody and stay silent on the healthy run.
func TestListsMatchAsPinterestMatches(t *testing.T) {
	promtool := toolPath(t, "promtool", "prometheus")
	for _, c := range []struct {
		name        string
		pre         stream.PreHash
		idfaMatches bool
	}{
		{"identifiers in plaintext", stream.PreHashNone, true},
		{"IDFAs hashed in lower case", stream.PreHashIDFALowercase, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := stream.Config{Profiles: 6000, Audiences: 2, Events: 20000, Seed: 5, MembershipRate: 0.45,
				DeviceFraction: 0.95, MalformedFraction: stream.None, PreHashed: c.pre}
			gen, err := stream.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			var pop []sandbox.User
			for _, u := range gen.Population(stream.DefaultPopulationShare) {
				pop = append(pop, sandbox.User{Type: u.Type, ID: u.ID})
			}
			r := newRig(t, 2, sandbox.Config{Population: pop})
			recs, _, err := stream.Collect(cfg)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := oracle(t, recs)
			r.produce(recs)
			ecfg := engineConfig()
			ecfg.AudiencePollInterval = 200 * time.Millisecond
			m := r.start(ecfg)
			r.converge(want, 60*time.Second)

			// What Pinterest (the sandbox) matches of each list.
			st := r.sb.State()
			byID := map[string]sandbox.ListState{}
			for _, l := range st.CustomerLists {
				byID[l.ID] = l
			}
			size := map[stream.ListKey]int{}
			for _, a := range st.Audiences {
				l := byID[a.CustomerListID]
				for _, typ := range ident.Types {
					if aud, ok := strings.CutSuffix(strings.TrimPrefix(l.Name, "pinsync "), " "+typ.String()); ok {
						size[stream.ListKey{Audience: aud, Type: typ}] = a.Size
					}
				}
			}
			judged := 0
			for k, set := range want {
				ratio := float64(size[k]) / float64(len(set))
				matches := k.Type != ident.IDFA || c.idfaMatches
				switch {
				case matches && (ratio < 0.6 || ratio > 0.8):
					t.Errorf("%s matches %.2f of its %d records, want about %.1f", k, ratio, len(set), stream.DefaultPopulationShare)
				case !matches && ratio > 0.005:
					// Not exactly none: an IDFA without a letter among its
					// hex digits hashes alike in either case (about one
					// in a thousand of the generator's).
					t.Errorf("%s matches %d of its %d records, want (almost) none", k, size[k], len(set))
				}
				if len(set) >= 1000 {
					judged++
				}
			}
			if judged < len(want) || len(want) != 6 {
				t.Fatalf("%d lists, %d of them large enough to be judged: the stream is too small for the alert", len(want), judged)
			}

			// pinsync reports, for each list, the records its audience's
			// members hold, Pinterest's size and when the list was made.
			waitFor(t, 20*time.Second, "every list's figures reported", func() bool {
				for k, set := range want {
					if listGauge(t, m.reg, "pinsync_audience_local_records", k) != float64(len(set)) ||
						listGauge(t, m.reg, "pinsync_audience_pinterest_size", k) != float64(size[k]) ||
						listGauge(t, m.reg, "pinsync_list_created_timestamp_seconds", k) == 0 {
						return false
					}
				}
				return true
			})

			var firing []stream.ListKey
			for k := range want {
				if k.Type == ident.IDFA && !c.idfaMatches {
					firing = append(firing, k)
				}
			}
			checkMatchAlerts(t, promtool, m.reg, want, firing)
		})
	}
}

// listGauge reads a gauge of one list (labels audience and list_type),
// summed over its series; 0 when there is none.
func listGauge(t *testing.T, g prometheus.Gatherer, name string, k stream.ListKey) float64 {
	t.Helper()
	return seriesWhere(t, g, name, map[string]string{"audience": k.Audience, "list_type": k.Type.String()},
		func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
}

// checkMatchAlerts runs the alert rules with promtool over the figures
// pinsync reports now, held for 60 hours and with each list made at the
// start of them (two days is how long Pinterest may take to match a list):
// PinsyncListMatchesNobody must fire for exactly the lists of firing, and
// PinsyncListMatchRateLow for none.
func checkMatchAlerts(t *testing.T, promtool string, g prometheus.Gatherer, lists map[stream.ListKey]stream.Set, firing []stream.ListKey) {
	t.Helper()
	var series strings.Builder
	keys := make([]stream.ListKey, 0, len(lists))
	for k := range lists {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
	for _, k := range keys {
		labels := fmt.Sprintf(`job="pinsync",instance="replica-0",audience=%q,list_type=%q`, k.Audience, k.Type.String())
		for _, name := range []string{"pinsync_audience_local_records", "pinsync_audience_pinterest_size"} {
			fmt.Fprintf(&series, "      - series: '%s{%s}'\n        values: '%vx3600'\n", name, labels, listGauge(t, g, name, k))
		}
		fmt.Fprintf(&series, "      - series: 'pinsync_list_created_timestamp_seconds{%s}'\n        values: '0x3600'\n", labels)
	}
	var expected strings.Builder
	if len(firing) == 0 {
		expected.WriteString("        exp_alerts: []\n")
	} else {
		expected.WriteString("        exp_alerts:\n")
		sort.Slice(firing, func(i, j int) bool { return firing[i].String() < firing[j].String() })
		for _, k := range firing {
			ratio := listGauge(t, g, "pinsync_audience_pinterest_size", k) / listGauge(t, g, "pinsync_audience_local_records", k)
			fmt.Fprintf(&expected, `          - exp_labels: {severity: critical, job: pinsync, audience: %q, list_type: %s}
            exp_annotations:
              summary: "Pinterest matches almost none of the %[2]s list of audience %[1]s"
              description: "Pinterest matches %.4[3]g%% of the records pinsync keeps in the %[2]s list of audience %[1]s (pinsync), two days or more after the list was created: campaigns targeting it reach (almost) nobody."
              runbook_url: "https://github.com/pinsync/pinsync/blob/main/README.md#pinsynclistmatchesnobody"
`, k.Audience, k.Type, 100*ratio)
		}
	}
	rules, err := filepath.Abs(filepath.Join("..", "deploy", "prometheus", "pinsync-rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	test := fmt.Sprintf(`rule_files: [%q]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
%s    alert_rule_test:
      - eval_time: 56h
        alertname: PinsyncListMatchesNobody
%s      - eval_time: 56h
        alertname: PinsyncListMatchRateLow
        exp_alerts: []
`, rules, series.String(), expected.String())
	file := filepath.Join(t.TempDir(), "match.test.yaml")
	if err := os.WriteFile(file, []byte(test), 0o600); err != nil {
		t.Fatal(err)
	}
	// Bounds a hung promtool; not a timing assertion.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, promtool, "test", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s\ntest:\n%s", err, out, test)
	}
}
