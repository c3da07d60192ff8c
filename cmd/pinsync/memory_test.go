package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// BenchmarkRSSThroughOutage runs one `pinsync run` process (4 partitions,
// 60,000 profiles, 8 audiences) through a sandbox outage of
// PINSYNC_BENCH_OUTAGE_S seconds (default 120) under a steady stream of
// 1.2 million events, at the default sync.max_buffered_bytes and at
// 32 MiB. It reports the process's RSS before, at its peak and after
// recovery (KiB), the bytes counted at the end of the outage, and whether
// reading paused; the lists must be exact after recovery. One iteration
// takes a few minutes:
//
//	go test ./cmd/pinsync -run xxx -bench RSSThroughOutage -benchtime 1x
func BenchmarkRSSThroughOutage(b *testing.B) {
	for _, c := range []struct {
		name  string
		limit int64 // 0: the default
	}{{"default", 0}, {"32MiB", 32 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				rssThroughOutage(b, c.limit, time.Duration(envInt("PINSYNC_BENCH_OUTAGE_S", 120))*time.Second)
			}
		})
	}
}

func rssThroughOutage(b *testing.B, limit int64, outage time.Duration) {
	settings := fastSettings
	if limit > 0 {
		settings.maxBufferedBytes = strconv.FormatInt(limit, 10)
	}
	f := newFleetWith(b, 4, sandbox.Config{WritesPerMinute: sandbox.Unlimited, ReadsPerMinute: sandbox.Unlimited}, settings)
	r := f.start(0)
	addr, pid := r.addr, r.cmd.Process.Pid
	rss := func() float64 {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			b.Fatal(err)
		}
		for line := range strings.Lines(string(st)) {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kib, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
				if err != nil {
					b.Fatal(err)
				}
				return kib
			}
		}
		b.Fatal("no VmRSS")
		return 0
	}
	recs := generate(b, stream.Config{Profiles: 60000, Audiences: 8, Events: 1_200_000, Seed: 3, MalformedFraction: stream.None})
	want, _ := expected(b, recs)
	warm := 50_000
	f.produce(recs[:warm])
	f.waitLagZero(120 * time.Second)
	before := rss()
	if err := f.sb.SetFaults(sandbox.Faults{Outage: time.Hour}); err != nil {
		b.Fatal(err)
	}
	steps := int(outage / time.Second)
	rest := recs[warm:]
	step := (len(rest) + steps - 1) / steps
	start, peak, paused := time.Now(), before, 0.0
	for s := range steps {
		f.produce(rest[min(s*step, len(rest)):min((s+1)*step, len(rest))])
		time.Sleep(time.Until(start.Add(time.Duration(s+1) * time.Second)))
		peak = max(peak, rss())
		if p, err := metric(addr, "pinsync_fetch_paused"); err == nil {
			paused = max(paused, p)
		}
	}
	counted, err := metric(addr, "pinsync_buffered_bytes")
	if err != nil {
		b.Fatal(err)
	}
	if err := f.sb.SetFaults(sandbox.Faults{}); err != nil {
		b.Fatal(err)
	}
	f.waitLagZero(5 * time.Minute)
	f.exact(want)
	b.ReportMetric(before, "rss_before_KiB")
	b.ReportMetric(peak, "rss_peak_KiB")
	b.ReportMetric(rss(), "rss_after_KiB")
	b.ReportMetric(counted, "counted_bytes")
	b.ReportMetric(paused, "paused")
}
