// Package bench measures pinsync end to end on one machine, in one run,
// against the limits it lives under: how fast Kafka alone can be read, how
// fast the records can be decoded and hashed with no Kafka at all, how fast
// a hand-written naive sync goes, and how fast the real pipeline (package
// consumer, uploading to the Pinterest sandbox over HTTP) syncs the same
// records to convergence. Everything runs in-process: an embedded Kafka
// (kfake) over TCP and the sandbox over HTTP on 127.0.0.1.
//
// It does not judge the figures (targets live in BENCHMARKS.md) and is not
// a load generator for a real cluster.
package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// Options say what to measure. Zero fields take the defaults named on them.
type Options struct {
	Events     int // records in the stream; default 1,000,000
	Profiles   int // default stream.DefaultProfiles
	Audiences  int // default stream.DefaultAudiences
	Partitions int // of the input topic; default 6
	// FlushInterval is the engine's sync.flush_interval; default 10s.
	FlushInterval time.Duration
	// MaxRecords is the per-request maximum; default 5000.
	MaxRecords int
	// StateProfiles is the number of profiles of the state measurement;
	// default 1,000,000.
	StateProfiles int
	// LatencyTest adds the paced run at half the measured rate.
	LatencyTest bool
	// BudgetTest adds the run under a 400 writes/minute budget with many
	// small audiences.
	BudgetTest bool
	// LatencyDuration bounds each paced run; default 60s.
	LatencyDuration time.Duration
	// Replicas, when above 1, adds runs of the pipeline with that many
	// engines in one group, and runs of 1 and of Replicas engines under
	// one write budget of ReplicaBudget writes a minute (default 400).
	Replicas      int
	ReplicaBudget int
	// Rekey adds a run of the pipeline in the re-keying mode
	// (kafka.rekey) on the same backlog, beside the plain one.
	Rekey bool
	// BudgetLease is the engines' sync.budget_lease: how long a loan of
	// write budget between replicas lasts; 0 keeps the engine's default,
	// negative turns lending off (each replica spends the share its
	// changes partitions give it).
	BudgetLease time.Duration
	// Progress, when set, is told what the bench is doing.
	Progress func(format string, args ...any)
	// Stage, when set, is called as each measured stage ("drain",
	// "decode_hash", "naive", "pipeline") starts; the function it returns
	// is called as the stage ends (e.g. to profile one stage).
	Stage  func(name string) (end func())
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.Events <= 0 {
		o.Events = 1_000_000
	}
	if o.Profiles <= 0 {
		o.Profiles = stream.DefaultProfiles
	}
	if o.Audiences <= 0 {
		o.Audiences = stream.DefaultAudiences
	}
	if o.Partitions <= 0 {
		o.Partitions = 6
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = 10 * time.Second
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = 5000
	}
	if o.StateProfiles <= 0 {
		o.StateProfiles = 1_000_000
	}
	if o.LatencyDuration <= 0 {
		o.LatencyDuration = 60 * time.Second
	}
	if o.ReplicaBudget <= 0 {
		o.ReplicaBudget = 400
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
	if o.Stage == nil {
		o.Stage = func(string) func() { return func() {} }
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Report is the outcome of one bench run (the --json object).
type Report struct {
	Events               int     `json:"events"`
	PipelineEventsPerS   float64 `json:"pipeline_events_per_s"`
	DrainEventsPerS      float64 `json:"drain_events_per_s"`
	DecodeHashEventsPerS float64 `json:"decode_hash_events_per_s"`
	NaiveEventsPerS      float64 `json:"naive_events_per_s"`
	RatioVsDrain         float64 `json:"ratio_vs_drain"`
	RatioVsDecodeHash    float64 `json:"ratio_vs_decode_hash"`
	RatioVsNaive         float64 `json:"ratio_vs_naive"`
	PinterestCalls       int     `json:"pinterest_calls"`
	MinPossibleCalls     int     `json:"min_possible_calls"`
	RecordsPerCall       float64 `json:"records_per_call"`
	FillRatio            float64 `json:"fill_ratio"`
	LatencyP50S          float64 `json:"latency_p50_s"`
	LatencyP99S          float64 `json:"latency_p99_s"`
	StateBytesPerProfile float64 `json:"state_bytes_per_profile"`
	RestoreProfilesPerS  float64 `json:"restore_profiles_per_s"`
	PeakRSSBytes         int64   `json:"peak_rss_bytes"`
	Converged            bool    `json:"converged"`
	// PipelineRekey is the run of Options.Rekey: the same backlog through
	// the re-key stage and the re-keyed topic.
	PipelineRekey *RekeyRun `json:"pipeline_rekey,omitempty"`

	// Details beyond the contract.
	PipelineSeconds float64 `json:"pipeline_s"`
	WriteRequests   int     `json:"write_requests"`
	Lists           int     `json:"lists"`
	RawFillRatio    float64 `json:"raw_fill_ratio"`
	UploadedRecords int     `json:"uploaded_records"`
	IdealRecords    int     `json:"ideal_records"`
	// Flushes counts the pipeline's window flushes by reason (full,
	// interval, shutdown, revoke).
	Flushes           map[string]int `json:"flushes"`
	LatencyTest       *Paced         `json:"latency_test,omitempty"`
	BudgetTest        *Paced         `json:"budget_test,omitempty"`
	ConvergenceReport string         `json:"convergence_report,omitempty"`
	// Replicas are the runs of --replicas: 1 and N engines, without and
	// with a write budget.
	Replicas []ReplicaRun `json:"replicas,omitempty"`
}

// ReplicaRun is one run of the pipeline on the backlog with a number of
// engines in one group, until every record is committed.
type ReplicaRun struct {
	Replicas int `json:"replicas"`
	// WritesPerMinute is the app's budget, enforced by the sandbox and
	// shared by the engines; -1 means none.
	WritesPerMinute int `json:"writes_per_minute"`
	// EventsPerS is the events over the time until every one was applied
	// by the profile stage.
	EventsPerS float64 `json:"events_per_s"`
	// Seconds is from the start until every record was committed: every
	// list holds its changes (the flush interval included).
	Seconds          float64 `json:"seconds"`
	PinterestCalls   int     `json:"pinterest_calls"`
	MinPossibleCalls int     `json:"min_possible_calls"`
	// WriteRequests counts every ads_write request; MinWriteRequests is
	// the minimum: the minimum calls and one audience creation per list.
	WriteRequests    int `json:"write_requests"`
	MinWriteRequests int `json:"min_write_requests"`
	// FloorS is MinWriteRequests at the budget: no run can converge sooner.
	FloorS      float64 `json:"floor_s,omitempty"`
	RateLimited int     `json:"rate_limited_429"`
	Converged   bool    `json:"converged"`
}

// RekeyRun is the pipeline's run in the re-keying mode.
type RekeyRun struct {
	EventsPerS float64 `json:"events_per_s"`
	Seconds    float64 `json:"seconds"`
	// RatioVsPipeline is EventsPerS over the plain pipeline's.
	RatioVsPipeline float64 `json:"ratio_vs_pipeline"`
	PinterestCalls  int     `json:"pinterest_calls"`
	Converged       bool    `json:"converged"`
}

// Paced is the outcome of a run at a set rate.
type Paced struct {
	RatePerS  float64 `json:"rate_per_s"`
	Events    int     `json:"events"`
	Audiences int     `json:"audiences"`
	// Lists is the number of non-empty lists the stream ends with.
	Lists int `json:"lists"`
	// Seconds is from the start of the run until every offset was
	// committed.
	Seconds        float64 `json:"seconds"`
	LatencyP50S    float64 `json:"latency_p50_s"`
	LatencyP99S    float64 `json:"latency_p99_s"`
	PinterestCalls int     `json:"pinterest_calls"`
	// WriteRequests counts every ads_write request, list and audience
	// creations included.
	WriteRequests int  `json:"write_requests"`
	RateLimited   int  `json:"rate_limited_429"`
	Converged     bool `json:"converged"`
}

const topic = "bench.events"

// env is the embedded Kafka and the sandbox.
type env struct {
	o       Options
	cluster *kfake.Cluster
	brokers []string
	dir     string
}

// Run measures. It returns an error when a stage could not run; a run that
// did not converge is reported in Report.Converged, not as an error.
func Run(ctx context.Context, o Options) (Report, error) {
	o = o.withDefaults()
	dir, err := os.MkdirTemp("", "pinsync-bench-")
	if err != nil {
		return Report{}, err
	}
	defer os.RemoveAll(dir)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(o.Partitions), topic))
	if err != nil {
		return Report{}, fmt.Errorf("kfake: %w", err)
	}
	defer c.Close()
	en := &env{o: o, cluster: c, brokers: c.ListenAddrs(), dir: dir}

	o.Progress("generating %d records", o.Events)
	scfg := stream.Config{Profiles: o.Profiles, Audiences: o.Audiences, Events: o.Events, Seed: 1,
		Start: time.Now().UTC().Truncate(time.Millisecond), MeanGap: time.Microsecond}
	recs, _, err := stream.Collect(scfg)
	if err != nil {
		return Report{}, err
	}
	o.Progress("producing to kfake")
	if err := en.produce(ctx, topic, recs, false); err != nil {
		return Report{}, err
	}
	rep := Report{Events: len(recs)}

	o.Progress("drain: plain consumer, no processing")
	end := o.Stage("drain")
	d, err := en.drain(ctx, len(recs))
	end()
	if err != nil {
		return rep, fmt.Errorf("drain: %w", err)
	}
	rep.DrainEventsPerS = rate(len(recs), d)

	o.Progress("decode+hash on %d goroutines", runtime.GOMAXPROCS(0))
	end = o.Stage("decode_hash")
	d, err = decodeHash(recs)
	end()
	if err != nil {
		return rep, err
	}
	rep.DecodeHashEventsPerS = rate(len(recs), d)

	o.Progress("naive: autocommit, encoding/json, SHA-256, 1,000-record PATCHes")
	end = o.Stage("naive")
	d, err = en.naive(ctx, recs, scfg)
	end()
	if err != nil {
		return rep, fmt.Errorf("naive: %w", err)
	}
	rep.NaiveEventsPerS = rate(len(recs), d)

	o.Progress("pipeline: pinsync to convergence")
	end = o.Stage("pipeline")
	pr, err := en.pipeline(ctx, pipelineRun{topic: topic, group: "pinsync-bench", events: len(recs), audiences: o.Audiences})
	end()
	if err != nil {
		return rep, fmt.Errorf("pipeline: %w", err)
	}
	rep.PipelineSeconds = pr.elapsed.Seconds()
	rep.PipelineEventsPerS = rate(len(recs), pr.elapsed)
	rep.PinterestCalls = pr.calls
	rep.UploadedRecords = pr.records
	rep.LatencyP50S, rep.LatencyP99S = pr.p50, pr.p99
	rep.Flushes = pr.flushes

	o.Progress("oracle and ideal uploader")
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		return rep, err
	}
	orc, _ := stream.BuildOracle(recs, dec, stream.DefaultMaxIdentifiersPerType)
	want := nonEmpty(orc.Expected())
	calls, idealRecs, idealFinal := stream.MinCalls(recs, dec, o.MaxRecords, 0)
	if d := stream.Diff(want, idealFinal); !d.OK() {
		return rep, fmt.Errorf("ideal uploader disagrees with the oracle: %s", d)
	}
	rep.MinPossibleCalls, rep.IdealRecords = calls, idealRecs
	diff := stream.Diff(want, pr.lists)
	rep.Converged = diff.OK() && pr.lagZero
	if !rep.Converged {
		rep.ConvergenceReport = fmt.Sprintf("lag zero: %v; %s", pr.lagZero, diff)
	}
	rep.WriteRequests = pr.writes
	rep.Lists = len(want)
	if pr.calls > 0 {
		rep.RecordsPerCall = float64(pr.records) / float64(pr.calls)
		rep.RawFillRatio = float64(pr.records) / float64(pr.calls*o.MaxRecords)
	}
	if pr.fillCalls > 0 {
		rep.FillRatio = float64(pr.fillRecords) / float64(pr.fillCalls*o.MaxRecords)
	}

	if o.Rekey {
		// The same records: the re-key stage writes each where its key
		// already put it, and reads and decodes it as it would any key.
		o.Progress("pipeline with kafka.rekey: pinsync to convergence through the re-keyed topic")
		end = o.Stage("pipeline_rekey")
		pr, err := en.pipeline(ctx, pipelineRun{topic: topic, group: "pinsync-bench-rekey", events: len(recs), audiences: o.Audiences, rekey: true})
		end()
		if err != nil {
			return rep, fmt.Errorf("pipeline with kafka.rekey: %w", err)
		}
		rr := &RekeyRun{EventsPerS: rate(len(recs), pr.elapsed), Seconds: pr.elapsed.Seconds(), PinterestCalls: pr.calls,
			Converged: pr.lagZero && stream.Diff(want, pr.lists).OK()}
		if rep.PipelineEventsPerS > 0 {
			rr.RatioVsPipeline = rr.EventsPerS / rep.PipelineEventsPerS
		}
		rep.PipelineRekey = rr
	}

	if o.Replicas > 1 {
		runs, err := en.replicaRuns(ctx, recs, want, calls)
		if err != nil {
			return rep, err
		}
		rep.Replicas = runs
	}

	if o.LatencyTest && rep.PipelineEventsPerS > 0 {
		o.Progress("latency test at %.0f events/s", rep.PipelineEventsPerS/2)
		p, err := en.paced(ctx, "latency", rep.PipelineEventsPerS/2, o.Audiences, -1)
		if err != nil {
			return rep, fmt.Errorf("latency test: %w", err)
		}
		rep.LatencyTest = p
		rep.LatencyP50S, rep.LatencyP99S = p.LatencyP50S, p.LatencyP99S
	}
	if o.BudgetTest {
		r := min(rep.PipelineEventsPerS/2, 2000)
		if r <= 0 {
			r = 1000
		}
		o.Progress("budget test: 400 writes/min, 1,000 audiences, %.0f events/s", r)
		p, err := en.paced(ctx, "budget", r, 1000, 400)
		if err != nil {
			return rep, fmt.Errorf("budget test: %w", err)
		}
		rep.BudgetTest = p
	}

	o.Progress("state size and restore")
	rep.StateBytesPerProfile = consumerMeasureState(o.StateProfiles)
	rep.RestoreProfilesPerS = consumerMeasureRestore(o.StateProfiles)

	if rep.DrainEventsPerS > 0 {
		rep.RatioVsDrain = rep.PipelineEventsPerS / rep.DrainEventsPerS
	}
	if rep.DecodeHashEventsPerS > 0 {
		rep.RatioVsDecodeHash = rep.PipelineEventsPerS / rep.DecodeHashEventsPerS
	}
	if rep.NaiveEventsPerS > 0 {
		rep.RatioVsNaive = rep.PipelineEventsPerS / rep.NaiveEventsPerS
	}
	rep.PeakRSSBytes = peakRSS()
	return rep, nil
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func nonEmpty(m map[stream.ListKey]stream.Set) map[stream.ListKey]stream.Set {
	for k, s := range m {
		if len(s) == 0 {
			delete(m, k)
		}
	}
	return m
}

// produce writes recs to topic, partitioned by murmur2 of the key. When
// paced, each record is sent at its event time, so that event time is
// produce time.
func (en *env) produce(ctx context.Context, t string, recs []stream.Record, paced bool) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(en.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return err
	}
	defer cl.Close()
	var firstErr error
	for i := range recs {
		if paced {
			if w := time.Until(recs[i].Timestamp); w > time.Millisecond {
				select {
				case <-time.After(w):
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		rec := &kgo.Record{Topic: t, Key: recs[i].Key, Value: recs[i].Value,
			Partition: stream.Partition(recs[i].Key, en.o.Partitions)}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil && firstErr == nil {
				firstErr = err
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return firstErr
}

// drain reads topic from the start with a plain consumer until n records
// arrived.
func (en *env) drain(ctx context.Context, n int) (time.Duration, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(en.brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	start := time.Now()
	got := 0
	for got < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return 0, ferr
		}
		got += fs.NumRecords()
	}
	return time.Since(start), nil
}

// decodeHash decodes (and so hashes) every record on GOMAXPROCS goroutines.
func decodeHash(recs []stream.Record) (time.Duration, error) {
	g := runtime.GOMAXPROCS(0)
	decs := make([]*schemas.Decoder, g)
	for i := range decs {
		d, err := schemas.NewDecoder(schemas.DecoderConfig{})
		if err != nil {
			return 0, err
		}
		decs[i] = d
	}
	done := make(chan int, g)
	start := time.Now()
	for i := range g {
		go func() {
			var ev schemas.Event
			ok := 0
			for j := i; j < len(recs); j += g {
				if decs[i].Decode(recs[j].Key, recs[j].Value, &ev) == nil {
					ok += len(ev.Identifiers)
				}
			}
			done <- ok
		}()
	}
	for range g {
		<-done
	}
	return time.Since(start), nil
}

// sandboxServer starts a sandbox over HTTP on 127.0.0.1.
func sandboxServer(writesPerMinute int) (*sandbox.Server, *httptest.Server, error) {
	sb, err := sandbox.New(sandbox.Config{WritesPerMinute: writesPerMinute, ReadsPerMinute: sandbox.Unlimited})
	if err != nil {
		return nil, nil, err
	}
	return sb, httptest.NewServer(sb), nil
}

// client returns a Pinterest client for a sandbox, with its own token store.
func (en *env) client(name, url string, writesPerMinute float64, reg prometheus.Registerer) (*pinterest.Client, error) {
	store := pinterest.NewFileTokenStore(filepath.Join(en.dir, name+"-token.json"))
	if err := store.Save(context.Background(), &oauth2.Token{RefreshToken: sandbox.DefaultRefreshToken, Expiry: time.Unix(1, 0)}); err != nil {
		return nil, err
	}
	return pinterest.New(pinterest.Config{
		BaseURL: url, AppID: sandbox.DefaultAppID, AppSecret: sandbox.DefaultAppSecret,
		TokenStore: store, WritesPerMinute: writesPerMinute, ReadsPerMinute: -1, Registerer: reg,
		MaxRecords: en.o.MaxRecords,
	})
}

// peakRSS is the process's peak resident set (VmHWM), 0 when unknown.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return kb * 1024
				}
			}
		}
	}
	return 0
}

// replicaRuns runs the pipeline with 1 and o.Replicas engines, each without
// and with one write budget, on the backlog, and checks each against the
// oracle.
func (en *env) replicaRuns(ctx context.Context, recs []stream.Record, want map[stream.ListKey]stream.Set, minCalls int) ([]ReplicaRun, error) {
	var out []ReplicaRun
	for _, budget := range []int{-1, en.o.ReplicaBudget} {
		for _, n := range []int{1, en.o.Replicas} {
			en.o.Progress("pipeline with %d replicas, budget %d writes/min", n, budget)
			// Until every record is committed: engines stopped together
			// right after applying the backlog would leave the commits of
			// partitions that moved while the group formed to their next
			// owner.
			r := pipelineRun{topic: topic, group: fmt.Sprintf("pinsync-bench-%dx%d", n, budget), events: len(recs),
				replicas: n, writesPerMinute: budget, untilLag: true, ready: func() bool { return true }}
			pr, err := en.pipeline(ctx, r)
			if err != nil {
				return nil, fmt.Errorf("pipeline with %d replicas: %w", n, err)
			}
			run := ReplicaRun{
				Replicas: n, WritesPerMinute: budget, EventsPerS: rate(len(recs), pr.applied), Seconds: pr.elapsed.Seconds(),
				PinterestCalls: pr.calls, MinPossibleCalls: minCalls, WriteRequests: pr.writes,
				MinWriteRequests: minCalls + len(want), RateLimited: pr.rateLimited,
				Converged: pr.lagZero && stream.Diff(want, pr.lists).OK(),
			}
			if budget > 0 {
				run.FloorS = float64(run.MinWriteRequests) / float64(budget) * 60
			}
			out = append(out, run)
		}
	}
	return out, nil
}
