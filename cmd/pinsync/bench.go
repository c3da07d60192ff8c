package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"text/tabwriter"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/bench"
	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
)

// runBench runs the real pipeline end to end on an embedded Kafka and the
// Pinterest sandbox and measures it against its limits in the same run
// (package internal/bench).
func runBench(ctx context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "bench", "usage: pinsync bench [flags]\n\nMeasures the pipeline end to end (embedded Kafka over TCP, the Pinterest\n"+
		"sandbox over HTTP) against a plain Kafka drain, decode+hash on all cores\n"+
		"and a naive hand-written sync, then checks convergence against the oracle.")
	var (
		events     = fs.Int("events", 1_000_000, "records in the stream")
		profiles   = fs.Int("profiles", 0, "profiles in the stream (default the generator's)")
		audiences  = fs.Int("audiences", 0, "audiences in the stream (default the generator's)")
		partitions = fs.Int("partitions", 6, "partitions of the input topic")
		flush      = fs.Duration("flush-interval", 0, "the engine's flush interval (default 10s)")
		state      = fs.Int("state-profiles", 1_000_000, "profiles of the state size and restore measurements")
		asJSON     = fs.Bool("json", false, "print one JSON object")
		budget     = fs.Bool("budget-test", false, "also run at 400 writes/min with 1,000 small audiences")
		latency    = fs.Bool("latency-test", false, "also measure event-to-upload latency at half the measured rate")
		cpuprofile = fs.String("cpuprofile", "", "write a CPU profile of the whole run (or of --profile-stage) to this file")
		stage      = fs.String("profile-stage", "", "profile only this stage: drain, decode_hash, naive or pipeline")
		quiet      = fs.Bool("quiet", false, "do not print progress")
		logPath    = fs.String("log", "", "write pinsync's JSON logs (level info) to this `file` (default: discarded)")
		replicas   = fs.Int("replicas", 1, "also run the pipeline with this many instances in one group, without and with one 400 writes/min budget, against one instance")
		rekey      = fs.Bool("rekey", false, "also run the pipeline in the re-keying mode (kafka.rekey) on the same records, beside the plain one")
		lease      = fs.Duration("budget-lease", 0, "the instances' sync.budget_lease (0: the default; negative: no lending of write budget between them)")
	)
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	if *events < 1 || *profiles < 0 || *audiences < 0 || *partitions < 1 || *state < 1 {
		fmt.Fprintln(io.Err, "bench: --events, --partitions and --state-profiles must be positive")
		return 2
	}
	if *replicas < 1 || *replicas > *partitions {
		fmt.Fprintf(io.Err, "bench: --replicas must be between 1 and --partitions (%d): a replica beyond the partitions owns nothing\n", *partitions)
		return 2
	}
	switch *stage {
	case "", "drain", "decode_hash", "naive", "pipeline", "pipeline_rekey":
	default:
		fmt.Fprintf(io.Err, "bench: --profile-stage %q: want drain, decode_hash, naive, pipeline or pipeline_rekey\n", *stage)
		return 2
	}
	if *stage != "" && *cpuprofile == "" {
		fmt.Fprintln(io.Err, "bench: --profile-stage needs --cpuprofile FILE")
		return 2
	}
	var stageHook func(string) func()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintf(io.Err, "bench: %v\n", err)
			return 1
		}
		defer f.Close()
		if *stage == "" {
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintf(io.Err, "bench: %v\n", err)
				return 1
			}
			defer pprof.StopCPUProfile()
		} else {
			stageHook = func(name string) func() {
				if name != *stage || pprof.StartCPUProfile(f) != nil {
					return func() {}
				}
				return pprof.StopCPUProfile
			}
		}
	}
	opts := bench.Options{
		Events: *events, Profiles: *profiles, Audiences: *audiences, Partitions: *partitions,
		FlushInterval: *flush, StateProfiles: *state, LatencyTest: *latency, BudgetTest: *budget,
		Replicas: *replicas, BudgetLease: *lease, Stage: stageHook, Rekey: *rekey,
	}
	if *logPath != "" {
		f, err := os.Create(*logPath)
		if err != nil {
			fmt.Fprintf(io.Err, "bench: %v\n", err)
			return 1
		}
		defer f.Close()
		opts.Logger = service.NewLogger(f, "info")
	}
	if !*quiet {
		opts.Progress = func(format string, args ...any) { fmt.Fprintf(io.Err, "bench: "+format+"\n", args...) }
	}
	rep, err := bench.Run(ctx, opts)
	if err != nil {
		fmt.Fprintf(io.Err, "bench: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(io.Out)
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(io.Err, "bench: %v\n", err)
			return 1
		}
	} else {
		printBench(io.Out, rep)
	}
	if !rep.Converged {
		fmt.Fprintf(io.Err, "bench: the pipeline did not converge: %s\n", rep.ConvergenceReport)
		return 1
	}
	if r := rep.PipelineRekey; r != nil && !r.Converged {
		fmt.Fprintln(io.Err, "bench: the pipeline with kafka.rekey did not converge")
		return 1
	}
	for _, r := range rep.Replicas {
		if !r.Converged {
			fmt.Fprintf(io.Err, "bench: the pipeline with %d replicas (budget %d) did not converge\n", r.Replicas, r.WritesPerMinute)
			return 1
		}
	}
	return 0
}

func printBench(out io.Writer, r bench.Report) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "stage\tevents/s\tpipeline ratio\t\n")
	fmt.Fprintf(tw, "drain (Kafka ceiling)\t%.0f\t%.3f\t\n", r.DrainEventsPerS, r.RatioVsDrain)
	fmt.Fprintf(tw, "decode+hash (all cores)\t%.0f\t%.3f\t\n", r.DecodeHashEventsPerS, r.RatioVsDecodeHash)
	fmt.Fprintf(tw, "naive sync\t%.0f\t%.3f\t\n", r.NaiveEventsPerS, r.RatioVsNaive)
	fmt.Fprintf(tw, "pinsync pipeline\t%.0f\t\t\n", r.PipelineEventsPerS)
	if x := r.PipelineRekey; x != nil {
		fmt.Fprintf(tw, "pinsync pipeline, kafka.rekey\t%.0f\t%.3f\t\n", x.EventsPerS, x.RatioVsPipeline)
	}
	tw.Flush()
	fmt.Fprintf(out, "\nevents %d in %.2fs; converged %v\n", r.Events, r.PipelineSeconds, r.Converged)
	fmt.Fprintf(out, "pinterest write calls %d (min possible %d, %.3fx); records/call %.0f; fill ratio %.3f\n",
		r.PinterestCalls, r.MinPossibleCalls, float64(r.PinterestCalls)/float64(max(r.MinPossibleCalls, 1)), r.RecordsPerCall, r.FillRatio)
	fmt.Fprintf(out, "event-to-upload latency p50 %.3fs p99 %.3fs\n", r.LatencyP50S, r.LatencyP99S)
	if x := r.PipelineRekey; x != nil {
		fmt.Fprintf(out, "kafka.rekey: events %d in %.2fs; converged %v; pinterest write calls %d\n", r.Events, x.Seconds, x.Converged, x.PinterestCalls)
	}
	for _, p := range []struct {
		name string
		p    *bench.Paced
	}{{"latency test", r.LatencyTest}, {"budget test", r.BudgetTest}} {
		if p.p != nil {
			fmt.Fprintf(out, "%s: %.0f events/s, %d events, %d audiences, %d lists: p50 %.3fs p99 %.3fs, %d calls (%d write requests), %d 429s, lag 0 after %.0fs, converged %v\n",
				p.name, p.p.RatePerS, p.p.Events, p.p.Audiences, p.p.Lists, p.p.LatencyP50S, p.p.LatencyP99S, p.p.PinterestCalls, p.p.WriteRequests,
				p.p.RateLimited, p.p.Seconds, p.p.Converged)
		}
	}
	if len(r.Replicas) > 0 {
		fmt.Fprintln(out)
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "replicas\tbudget/min\tevents/s\tseconds\tfloor s\tcalls\tmin calls\twrites\tmin writes\t429s\tconverged\t\n")
		for _, x := range r.Replicas {
			budget, floor := "none", ""
			if x.WritesPerMinute > 0 {
				budget, floor = fmt.Sprint(x.WritesPerMinute), fmt.Sprintf("%.1f", x.FloorS)
			}
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%.1f\t%s\t%d\t%d\t%d\t%d\t%d\t%v\t\n", x.Replicas, budget, x.EventsPerS, x.Seconds, floor,
				x.PinterestCalls, x.MinPossibleCalls, x.WriteRequests, x.MinWriteRequests, x.RateLimited, x.Converged)
		}
		tw.Flush()
	}
	fmt.Fprintf(out, "state %.1f bytes/profile; restore %.0f profiles/s; peak RSS %d MiB\n",
		r.StateBytesPerProfile, r.RestoreProfilesPerS, r.PeakRSSBytes>>20)
}
