package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// BenchmarkRebuildBigAudience measures the rebuild of an audience large
// against its budget: PINSYNC_BENCH_MEMBERS profiles (default 200,000),
// every one in the audience with one email, synced by four replicas that
// share a budget of PINSYNC_BENCH_WPM writes a minute (default 40; the
// sandbox enforces it), records of 5,000 a request. The list is deleted at
// Pinterest and its rebuild requested; once the rebuild has filled one
// changelog partition of the four, its owner is killed (kill -9) and
// started again. It reports the
// time from the deletion to the rebuild's end, the peak RSS of the owner
// before and after the kill, the lists made (1: the rebuild carries on
// with its list) and checks the list exact.
//
//	go test ./cmd/pinsync -run xxx -bench RebuildBigAudience -benchtime 1x -timeout 60m
func BenchmarkRebuildBigAudience(b *testing.B) {
	for range b.N {
		rebuildBigAudience(b, envInt("PINSYNC_BENCH_MEMBERS", 200_000), envInt("PINSYNC_BENCH_WPM", 40))
	}
}

func rebuildBigAudience(b *testing.B, members, wpm int) {
	settings := fleetSettings{writesPerMinute: strconv.Itoa(wpm), maxRecords: "5000", flushInterval: "2s",
		rebuildMaxBytes: os.Getenv("PINSYNC_BENCH_REBUILD_BYTES")}
	f := newFleetWith(b, 4, sandbox.Config{WritesPerMinute: wpm, ReadsPerMinute: sandbox.Unlimited, AccessTokenTTL: time.Hour}, settings)
	for id := range 4 {
		f.start(id)
	}
	recs := generate(b, stream.Config{Profiles: members, Audiences: 1, Events: 2 * members, Seed: 7,
		MalformedFraction: stream.None, NativeFraction: stream.None, EmailsPerProfile: 1, DeviceFraction: stream.None,
		MembershipRate: 1, IdentifyFraction: stream.None, ForgetFraction: stream.None, ConsentFraction: stream.None})
	want, _ := expected(b, recs)
	var k stream.ListKey
	for key, s := range want {
		if key.Type == ident.Email && len(s) > len(want[k]) {
			k = key
		}
	}
	f.produce(recs)
	f.waitLagZero(60 * time.Minute)
	f.exact(want)
	b.Logf("synced: %s/%s holds %d records", k.Audience, k.Type, len(want[k]))

	ct, err := control.Open(b.Context(), control.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(f.brokers...)}, Topic: replicaGroup + ".control"})
	if err != nil {
		b.Fatal(err)
	}
	defer ct.Close()
	key := control.ListKey{AdAccount: sandbox.DefaultAdAccountID, Audience: k.Audience, Type: k.Type}
	var old string
	waitFor(b, time.Minute, "the list in the registry", func() bool {
		old = ct.Registry().Entries()[key].CustomerListID
		return old != ""
	})
	if !f.sb.DeleteCustomerList(old) {
		b.Fatalf("no list %s to delete", old)
	}
	// The list is gone and a rebuild asked for, as pinsync resync does (a
	// write to the deleted list would ask too, with the next change).
	start := time.Now()
	if _, err := ct.Registry().RequestRebuild(b.Context(), k.Audience, k.Type); err != nil {
		b.Fatal(err)
	}
	owner := -1
	waitFor(b, 60*time.Minute, "a changelog partition in the rebuild's list", func() bool {
		e := ct.Registry().Entries()[key]
		return e.Building != nil && len(e.Building.Done) >= 1
	})
	for _, r := range f.running() {
		if v, err := metricWith(r.addr, "pinsync_list_rebuild_progress", k.Audience); err == nil && v > 0 {
			owner = r.id
		}
	}
	if owner < 0 {
		b.Fatal("no replica reports the rebuild's progress")
	}
	building := *ct.Registry().Entries()[key].Building
	peakBefore := peakRSS(b, f, owner)
	f.kill9(owner)
	f.start(owner)
	waitFor(b, 60*time.Minute, "the rebuild done", func() bool { return ct.Registry().Entries()[key].Rebuild == "" })
	took := time.Since(start)
	f.waitLagZero(10 * time.Minute)
	f.exact(want)
	peakAfter := 0.0
	for _, r := range f.running() {
		peakAfter = max(peakAfter, peakRSS(b, f, r.id))
	}
	made := 0
	for _, l := range f.sb.State().CustomerLists {
		if strings.HasSuffix(l.Name, " #1") || strings.Contains(l.Name, " #") {
			made++
		}
	}
	e := ct.Registry().Entries()[key]
	if made != 1 || e.CustomerListID != building.CustomerListID || !slices.Equal(e.Retired, []string{old}) {
		b.Errorf("%d lists made, entry %+v; want the one made before the kill", made, e)
	}
	b.ReportMetric(took.Seconds(), "rebuild_s")
	b.ReportMetric(peakBefore, "owner_peak_rss_KiB")
	b.ReportMetric(peakAfter, "fleet_peak_rss_after_KiB")
	b.ReportMetric(float64(made), "lists_made")
	b.ReportMetric(float64(len(want[k])), "records")
}

// peakRSS is replica id's peak resident set (VmHWM), in KiB.
func peakRSS(b *testing.B, f *fleet, id int) float64 {
	for _, r := range f.running() {
		if r.id != id {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.cmd.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(string(st)) {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				kib, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
				if err != nil {
					b.Fatal(err)
				}
				return kib
			}
		}
	}
	b.Fatalf("replica %d: no VmHWM", id)
	return 0
}
