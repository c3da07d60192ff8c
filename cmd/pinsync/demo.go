package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/demo"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/stream"
)

// runDemo is `pinsync demo`: the whole system on an embedded Kafka broker
// and the Pinterest sandbox, with a generated stream, checked against the
// oracle. It exits 0 only when every list converged.
func runDemo(ctx context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "demo", "usage: pinsync demo [flags]\n\n"+
		"Starts an embedded Kafka broker and the Pinterest sandbox, produces a generated Segment Engage\n"+
		"stream, runs --replicas instances of pinsync in one consumer group, and waits until every\n"+
		"Pinterest list equals what the stream says it must hold. Exit status 0 only when it does.")
	var (
		cfg       demo.Config
		malformed float64
		logPath   string
		asJSON    bool
		hold      bool
	)
	fs.IntVar(&cfg.Profiles, "profiles", demo.DefaultProfiles, "profiles in the generated stream")
	fs.IntVar(&cfg.Audiences, "audiences", demo.DefaultAudiences, "audiences in the generated stream")
	fs.IntVar(&cfg.Events, "events", demo.DefaultEvents, "records in the generated stream")
	fs.Uint64Var(&cfg.Seed, "seed", demo.DefaultSeed, "seed of the generated stream")
	fs.Float64Var(&malformed, "malformed", stream.DefaultMalformedFraction, "share of malformed records (0..0.5)")
	fs.IntVar(&cfg.Replicas, "replicas", demo.DefaultReplicas, "pinsync instances in the consumer group")
	fs.IntVar(&cfg.Partitions, "partitions", demo.DefaultPartitions, "partitions of the input topic")
	fs.Float64Var(&cfg.WritesPerMinute, "writes-per-minute", demo.DefaultWritesPerMinute,
		"the group's Pinterest write budget, shared by the replicas (pinterest.writes_per_minute; Pinterest's is 400)")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", demo.DefaultFlushInterval, "sync.flush_interval")
	fs.DurationVar(&cfg.Timeout, "timeout", demo.DefaultTimeout, "give up after this long")
	fs.StringVar(&logPath, "log", "", "write pinsync's JSON logs to this `file` (default: discarded)")
	fs.StringVar(&cfg.LogLevel, "log-level", demo.DefaultLogLevel, "level of the logs written to --log")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object instead of the table")
	fs.BoolVar(&hold, "hold", false, "keep everything running after the verdict until interrupted")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	// Zero means "default" to demo.Config; on the command line it is a
	// mistake.
	for _, f := range []struct {
		name string
		bad  bool
	}{
		{"profiles", cfg.Profiles < 1}, {"audiences", cfg.Audiences < 1}, {"events", cfg.Events < 1},
		{"replicas", cfg.Replicas < 1}, {"partitions", cfg.Partitions < 1},
		{"writes-per-minute", cfg.WritesPerMinute <= 0}, {"flush-interval", cfg.FlushInterval <= 0},
		{"timeout", cfg.Timeout <= 0},
	} {
		if f.bad {
			fmt.Fprintf(io.Err, "demo: --%s must be positive\n", f.name)
			return 2
		}
	}
	cfg.MalformedFraction = malformed
	if malformed == 0 {
		cfg.MalformedFraction = stream.None
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(io.Err, "demo: invalid flags:\n%s\n", indent(err.Error()))
		return 2
	}
	cfg.Progress = io.Err
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			fmt.Fprintln(io.Err, "demo:", err)
			return 1
		}
		defer f.Close()
		cfg.Log = f
	}

	d, err := demo.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(io.Err, "demo:", err)
		return 1
	}
	printDemoBanner(io.Err, d)
	res := d.Wait(ctx)
	if asJSON {
		if err := writeDemoJSON(io.Out, res); err != nil {
			fmt.Fprintln(io.Err, "demo:", err)
		}
	} else {
		writeDemoTable(io.Out, res)
	}
	if !res.Converged {
		fmt.Fprintf(io.Err, "demo: not converged: %s\n", res.Reason)
		if logPath == "" {
			fmt.Fprintln(io.Err, "demo: run again with --log FILE to keep pinsync's logs")
		}
	}
	if hold && ctx.Err() == nil {
		fmt.Fprintf(io.Err, "holding: everything keeps running; status page %s; Pinterest sandbox state %s/sandbox/v1/state; "+
			"interrupt (Ctrl-C) to stop\n", d.StatusURLs()[0], d.SandboxURL())
		<-ctx.Done()
	}
	fmt.Fprintln(io.Err, "demo: shutting down")
	if err := d.Close(); err != nil {
		fmt.Fprintf(io.Err, "demo: shutdown: %v\n", err)
		return 1
	}
	if !res.Converged {
		return 1
	}
	return 0
}

func printDemoBanner(w io.Writer, d *demo.Demo) {
	c := d.Config()
	fmt.Fprintf(w, "pinsync demo: embedded Kafka at %s (topic %s, %d partitions); Pinterest sandbox at %s\n",
		strings.Join(d.Brokers(), ","), demo.Topic, c.Partitions, d.SandboxURL())
	fmt.Fprintf(w, "pinsync demo: %d replicas of pinsync in consumer groups %q and %q; writes_per_minute raised to %.0f for the group "+
		"for the demo, shared by the replicas (Pinterest's budget is %d a minute; the sandbox enforces %.0f)\n",
		c.Replicas, demo.Group, demo.Group+".lists", c.WritesPerMinute, pinterest.DefaultWritesPerMinute, c.WritesPerMinute)
	for i, u := range d.StatusURLs() {
		if i == 0 {
			fmt.Fprintf(w, "status page: %s\n", u)
			continue
		}
		fmt.Fprintf(w, "status page of replica %d: %s\n", i+1, u)
	}
	fmt.Fprintf(w, "pinsync demo: producing %d records of %d profiles in %d audiences (seed %d)\n",
		c.Events, c.Profiles, c.Audiences, c.Seed)
}

// writeDemoTable prints one row per audience and list type, then totals and
// the verdict.
func writeDemoTable(w io.Writer, r demo.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "audience\tlist type\tmembers\texpected\tin Pinterest\tmissing\textra\tmatched\tmatch rate\tcalls\t")
	for _, l := range r.Lists {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t\n",
			l.Audience, l.ListType, l.Members, l.Expected, l.InPinterest, l.Missing, l.Extra, l.Matched, matchRate(l), l.Calls)
	}
	_ = tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintf(w, "members: profiles in the audience; expected: hashed identifiers the list must hold; "+
		"matched: the audience size Pinterest reports, its users among the list's records (the sandbox knows %d users: "+
		"every identifier of %.0f%% of the profiles, hashed by Pinterest's rules)\n", r.Population, 100*stream.DefaultPopulationShare)
	dl := fmt.Sprint(r.DeadLettered)
	if r.DeadLettered < 0 {
		dl = "unknown"
	}
	fmt.Fprintf(w, "events %d (%d malformed, %s dead-lettered), profiles %d\n", r.Events, r.Malformed, dl, r.Profiles)
	fmt.Fprintf(w, "Pinterest: %d list writes carrying %d records (%.1f records a call), %d requests in all, %d rate-limited\n",
		r.PinterestCalls, r.UploadedRecords, r.RecordsPerCall(), r.Requests, r.RateLimited)
	if r.Converged {
		fmt.Fprintf(w, "verdict: CONVERGED in %.1fs: every list equals the oracle and every record is committed\n",
			r.Duration.Seconds())
		return
	}
	fmt.Fprintf(w, "verdict: NOT CONVERGED after %.1fs: %s (lag %d, %d records missing, %d extra)\n",
		r.Duration.Seconds(), r.Reason, r.Lag, r.Missing, r.Extra)
}

// matchRate is the share of a list's records Pinterest matches.
func matchRate(l demo.ListResult) string {
	if l.InPinterest == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(l.Matched)/float64(l.InPinterest))
}

// demoJSON is the --json output.
type demoJSON struct {
	Converged      bool           `json:"converged"`
	Events         int            `json:"events"`
	Profiles       int            `json:"profiles"`
	Audiences      []demoListJSON `json:"audiences"`
	PinterestCalls int            `json:"pinterest_calls"`
	RecordsPerCall float64        `json:"records_per_call"`
	DeadLettered   int            `json:"dead_lettered"`
	DurationS      float64        `json:"duration_s"`
}

type demoListJSON struct {
	Key         string `json:"key"`
	ListType    string `json:"list_type"`
	Expected    int    `json:"expected"`
	InPinterest int    `json:"in_pinterest"`
	Missing     int    `json:"missing"`
	Extra       int    `json:"extra"`
	Matched     int    `json:"matched"`
}

func writeDemoJSON(w io.Writer, r demo.Result) error {
	out := demoJSON{
		Converged: r.Converged, Events: r.Events, Profiles: r.Profiles, Audiences: []demoListJSON{},
		PinterestCalls: r.PinterestCalls, RecordsPerCall: r.RecordsPerCall(), DeadLettered: r.DeadLettered,
		DurationS: r.Duration.Seconds(),
	}
	for _, l := range r.Lists {
		out.Audiences = append(out.Audiences, demoListJSON{Key: l.Audience, ListType: l.ListType,
			Expected: l.Expected, InPinterest: l.InPinterest, Missing: l.Missing, Extra: l.Extra, Matched: l.Matched})
	}
	return json.NewEncoder(w).Encode(out)
}
