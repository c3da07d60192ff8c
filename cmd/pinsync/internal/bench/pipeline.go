package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/consumer/lists"
	"github.com/pinsync/pinsync/consumer/profiles"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

var (
	consumerMeasureState   = profiles.MeasureState
	consumerMeasureRestore = profiles.MeasureRestore
)

type pipelineRun struct {
	topic, group string
	events       int
	audiences    int
	// replicas is the number of engines in the group (default 1), each
	// with its own Pinterest client, spending one budget between them.
	replicas int
	// writesPerMinute is the write budget of client and sandbox; negative
	// means none.
	writesPerMinute int
	// untilLag: wait for the engine to commit everything on its own
	// (paced runs); otherwise the engine is shut down, as on SIGTERM,
	// once it has applied every record (a backlog's tail would otherwise
	// wait a flush interval).
	untilLag bool
	// ready reports whether every record has been produced (untilLag).
	ready func() bool
	// rekey runs the engines with kafka.rekey.
	rekey bool
}

type pipelineResult struct {
	elapsed time.Duration
	// applied is when every record had been applied (0 if never).
	applied        time.Duration
	calls, records int
	// writes counts every ads_write request (audience creations too);
	// fillRecords and fillCalls are those of steadyCalls.
	writes                 int
	fillRecords, fillCalls int
	rateLimited            int
	p50, p99               float64
	lagZero                bool
	lists                  map[stream.ListKey]stream.Set
	flushes                map[string]int
}

// pipeline runs pinsync on r.topic until every record is committed, and
// reads what the sandbox lists hold.
func (en *env) pipeline(ctx context.Context, r pipelineRun) (pipelineResult, error) {
	if r.writesPerMinute == 0 {
		r.writesPerMinute = sandbox.Unlimited
	}
	r.replicas = max(r.replicas, 1)
	sb, srv, err := sandboxServer(r.writesPerMinute)
	if err != nil {
		return pipelineResult{}, err
	}
	defer srv.Close()
	regs := make([]*prometheus.Registry, r.replicas)
	engines := make([]*consumer.Engine, r.replicas)
	for i := range engines {
		regs[i] = prometheus.NewRegistry()
		pin, err := en.client(fmt.Sprintf("%s-%d", r.group, i), srv.URL, float64(r.writesPerMinute), regs[i])
		if err != nil {
			return pipelineResult{}, err
		}
		engines[i], err = consumer.New(consumer.Config{
			Topics: []string{r.topic}, Group: r.group, AdAccount: sandbox.DefaultAdAccountID,
			FlushInterval: en.o.FlushInterval, MaxRecords: en.o.MaxRecords,
			AudiencePollInterval: -1, Rekey: r.rekey, BudgetLease: en.o.BudgetLease,
		}, consumer.Deps{Kafka: []kgo.Opt{kgo.SeedBrokers(en.brokers...)}, Pinterest: pin,
			Writes: pin.WriteBudget(), Reads: pin.ReadBudget(),
			Registerer: regs[i], Logger: en.o.Logger})
		if err != nil {
			return pipelineResult{}, err
		}
	}
	adm, err := kgo.NewClient(kgo.SeedBrokers(en.brokers...))
	if err != nil {
		return pipelineResult{}, err
	}
	defer adm.Close()
	ka := kadm.NewClient(adm)
	// The topic whose commits by the group are the end-to-end progress.
	committed := r.topic
	if r.rekey {
		committed = r.group + ".rekeyed"
	}

	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, r.replicas)
	start := time.Now()
	for _, e := range engines {
		go func() { done <- e.Run(runCtx) }()
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var runErrs []error
	var first time.Time
	var applied time.Duration
	for running := r.replicas; running > 0; {
		select {
		case <-ctx.Done():
			return pipelineResult{}, ctx.Err()
		case err := <-done:
			running--
			if err != nil {
				runErrs = append(runErrs, err)
			}
			stop() // one replica ending ends the run
			continue
		case <-tick.C:
		}
		n := sumCounters(regs, "pinsync_events_total")
		if n >= float64(r.events) && applied == 0 {
			applied = time.Since(start)
		}
		if r.untilLag {
			if r.ready() && lagZero(ctx, ka, committed, r.group) {
				stop()
			}
		} else if applied > 0 && runCtx.Err() == nil {
			en.o.Progress("pipeline: every record applied after %s; shutting down", time.Since(start).Round(time.Millisecond))
			stop()
		} else if n > 0 && first.IsZero() {
			first = time.Now()
			en.o.Progress("pipeline: first record applied after %s", first.Sub(start).Round(time.Millisecond))
		}
	}
	if err := errors.Join(runErrs...); err != nil {
		return pipelineResult{}, err
	}
	res := pipelineResult{elapsed: time.Since(start), applied: applied, lagZero: lagZero(ctx, ka, committed, r.group)}
	res.writes = int(sumCounters(regs, "pinsync_pinterest_requests_total", "category", "ads_write"))
	res.rateLimited = int(sumCounters(regs, "pinsync_rate_limited_total"))
	for _, reg := range regs {
		res.records += int(histogramSum(reg, "pinsync_records_per_request"))
	}
	res.fillRecords, res.fillCalls = steadyCalls(sb)
	for _, l := range sb.State().CustomerLists {
		res.calls += len(l.Calls)
	}
	res.p50, res.p99 = quantiles(regs, "pinsync_event_to_upload_seconds", 0.5, 0.99)
	res.flushes = map[string]int{}
	for _, reason := range lists.FlushReasons() {
		if n := int(sumCounters(regs, "pinsync_flushes_total", "reason", reason)); n > 0 {
			res.flushes[reason] = n
		}
	}
	res.lists, err = sandboxLists(sb)
	return res, err
}

// sumCounters is sumCounter over several registries.
func sumCounters(regs []*prometheus.Registry, name string, labels ...string) float64 {
	sum := 0.0
	for _, reg := range regs {
		sum += sumCounter(reg, name, labels...)
	}
	return sum
}

// steadyCalls counts the records and calls of every list's write calls but
// its last two: the final flush of a backlog sends each list's remaining
// adds and removes, which are partial by nature; every other call could
// have been full.
func steadyCalls(sb *sandbox.Server) (records, calls int) {
	for _, l := range sb.State().CustomerLists {
		if n := len(l.Calls) - 2; n > 0 {
			for _, r := range l.Calls[:n] {
				records += r
			}
			calls += n
		}
	}
	return records, calls
}

// lagZero reports whether the group committed the end of every partition.
func lagZero(ctx context.Context, ka *kadm.Client, topic, group string) bool {
	ends, err := ka.ListEndOffsets(ctx, topic)
	if err != nil {
		return false
	}
	offs, err := ka.FetchOffsets(ctx, group)
	if err != nil {
		return false
	}
	ok := true
	ends.Each(func(o kadm.ListedOffset) {
		c, found := offs.Lookup(o.Topic, o.Partition)
		if o.Offset > 0 && (!found || c.At < o.Offset) {
			ok = false
		}
	})
	return ok
}

// sumCounter sums a counter family's series whose labels match the
// name=value pairs given.
func sumCounter(g prometheus.Gatherer, name string, labels ...string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
		}
	}
	return sum
}

// histogramSum is the sum of a histogram's observations.
func histogramSum(g prometheus.Gatherer, name string) float64 {
	mfs, err := g.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetHistogram().GetSampleSum()
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// quantiles estimates quantiles of a histogram summed over registries by
// linear interpolation within its buckets (as Prometheus's
// histogram_quantile does).
func quantiles(regs []*prometheus.Registry, name string, qs ...float64) (float64, float64) {
	out := make([]float64, 2)
	var bounds []float64
	var counts []float64
	total := 0.0
	for _, g := range regs {
		mfs, err := g.Gather()
		if err != nil {
			return 0, 0
		}
		for _, mf := range mfs {
			if mf.GetName() != name || len(mf.GetMetric()) == 0 {
				continue
			}
			h := mf.GetMetric()[0].GetHistogram()
			total += float64(h.GetSampleCount())
			for i, b := range h.GetBucket() {
				if i >= len(bounds) {
					bounds = append(bounds, b.GetUpperBound())
					counts = append(counts, 0)
				}
				counts[i] += float64(b.GetCumulativeCount())
			}
		}
	}
	if total == 0 {
		return 0, 0
	}
	for i, q := range qs[:min(len(qs), 2)] {
		rank := q * total
		lower, prev := 0.0, 0.0
		out[i] = math.Inf(1)
		for j, c := range counts {
			if c >= rank {
				if c == prev {
					out[i] = bounds[j]
				} else {
					out[i] = lower + (bounds[j]-lower)*(rank-prev)/(c-prev)
				}
				break
			}
			lower, prev = bounds[j], c
		}
	}
	return out[0], out[1]
}

// sandboxLists reads pinsync's lists from the sandbox in oracle form.
func sandboxLists(sb *sandbox.Server) (map[stream.ListKey]stream.Set, error) {
	out := map[stream.ListKey]stream.Set{}
	for _, l := range sb.State().CustomerLists {
		name, ok := strings.CutPrefix(l.Name, "pinsync ")
		if !ok {
			continue
		}
		i := strings.LastIndexByte(name, ' ')
		if i < 0 {
			continue
		}
		t, err := ident.ParseType(name[i+1:])
		if err != nil {
			continue
		}
		set, err := stream.ParseSet(l.Records)
		if err != nil {
			return nil, err
		}
		if len(set) > 0 {
			out[stream.ListKey{Audience: name[:i], Type: t}] = set
		}
	}
	return out, nil
}

// paced produces a fresh stream at ratePerS, each record at its event time,
// while pinsync consumes it, and reports event-to-upload latency.
func (en *env) paced(ctx context.Context, name string, ratePerS float64, audiences, writesPerMinute int) (*Paced, error) {
	n := int(ratePerS * en.o.LatencyDuration.Seconds())
	n = max(min(n, en.o.Events), 1000)
	t := "bench." + name
	adm, err := kgo.NewClient(kgo.SeedBrokers(en.brokers...))
	if err != nil {
		return nil, err
	}
	_, err = kadm.NewClient(adm).CreateTopic(ctx, int32(en.o.Partitions), -1, nil, t)
	adm.Close()
	if err != nil {
		return nil, fmt.Errorf("create topic: %w", err)
	}
	start := time.Now().Add(2 * time.Second).UTC().Truncate(time.Millisecond)
	gap := time.Duration(float64(time.Second) / ratePerS)
	scfg := stream.Config{Profiles: en.o.Profiles, Audiences: audiences, Events: n, Seed: 2,
		Start: start, MeanGap: gap}
	if writesPerMinute > 0 {
		// The budget test: no members at the start, so no backfill (which
		// would spend the whole stream on a few audiences), only churn
		// spread over every audience.
		scfg.MembershipRate = stream.None
	}
	recs, _, err := stream.Collect(scfg)
	if err != nil {
		return nil, err
	}
	prodErr := make(chan error, 1)
	var produced atomic.Bool
	go func() {
		err := en.produce(ctx, t, recs, true)
		produced.Store(true)
		prodErr <- err
	}()
	res, err := en.pipeline(ctx, pipelineRun{topic: t, group: "pinsync-" + name, events: len(recs), audiences: audiences,
		writesPerMinute: writesPerMinute, untilLag: true, ready: produced.Load})
	if perr := <-prodErr; err == nil {
		err = perr
	}
	if err != nil {
		return nil, err
	}
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		return nil, err
	}
	orc, _ := stream.BuildOracle(recs, dec, stream.DefaultMaxIdentifiersPerType)
	want := nonEmpty(orc.Expected())
	return &Paced{
		RatePerS: ratePerS, Events: len(recs), Audiences: audiences, Lists: len(want),
		Seconds:     res.elapsed.Seconds(),
		LatencyP50S: res.p50, LatencyP99S: res.p99, PinterestCalls: res.calls, WriteRequests: res.writes,
		RateLimited: res.rateLimited,
		Converged:   res.lagZero && stream.Diff(want, res.lists).OK(),
	}, nil
}
