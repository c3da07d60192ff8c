package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/pinsync/pinsync/schemas/format"
	"github.com/pinsync/pinsync/schemas/stream"
)

// runProduce writes a generated Segment Engage stream (package
// schemas/stream) to a Kafka topic, keyed by profile id and partitioned by
// murmur2 of the key like the Java client, so that pinsync can be tried and
// measured without a customer-data platform.
func runProduce(ctx context.Context, io *stdio, args []string) int {
	fs := flag.NewFlagSet("produce", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	fs.Usage = func() {
		fmt.Fprintln(io.Err, "usage: pinsync produce --topic TOPIC [flags]\n\nWrites a generated, reproducible stream of Segment Engage audience events\n(invented profiles) to Kafka, keyed by profile id.\n\nflags:")
		fs.PrintDefaults()
	}
	var (
		brokers    = fs.String("brokers", io.Getenv("PINSYNC_KAFKA_BROKERS"), "comma-separated Kafka brokers (default $PINSYNC_KAFKA_BROKERS, else localhost:9092)")
		topic      = fs.String("topic", "", "topic to write to (required)")
		profiles   = fs.Int("profiles", stream.DefaultProfiles, "number of profiles")
		audiences  = fs.Int("audiences", stream.DefaultAudiences, "number of audiences")
		events     = fs.Int("events", stream.DefaultEvents, "number of records, backfill and malformed ones included")
		seed       = fs.Uint64("seed", 1, "seed: the same flags write the same records")
		prefix     = fs.String("audience-prefix", "", "prefix for every audience key")
		profPrefix = fs.String("profile-prefix", "", `prefix for every profile id (default "usr_"); identifiers differ with it`)
		malformed  = fs.Float64("malformed", stream.DefaultMalformedFraction, "share of malformed records (0 for none)")
		native     = fs.Float64("native", stream.DefaultNativeFraction, "share of actions in pinsync's native format, forgets included (0 for none)")
		consent    = fs.String("consent-category", "", "consent category carried by every record; profiles withdraw it now and then")
		start      = fs.String("start", "", "RFC 3339 time of the first event (default now)")
		ratePerSec = fs.Float64("rate", 0, "records per second (0 = as fast as possible)")
		create     = fs.Bool("create-topic", false, "create the topic first (an existing topic is kept)")
		partitions = fs.Int("partitions", 12, "partitions of a created topic")
		replicas   = fs.Int("replication-factor", -1, "replication factor of a created topic (-1 = broker default)")
		subject    = fs.String("subject", "", "registry subject of the published schema (default TOPIC-value)")
		ceMode     = fs.String("cloudevents-mode", "binary", "CloudEvents mode with --format cloudevents: binary or structured")
		ff         formatFlags
	)
	ff.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.Err, "produce: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *topic == "" {
		fmt.Fprintln(io.Err, "produce: --topic is required")
		return 2
	}
	fcfg, _, err := ff.config(io.Getenv, format.Mapping{})
	if err != nil {
		fmt.Fprintf(io.Err, "produce: %v\n", err)
		return 2
	}
	if fcfg.Kind == format.Avro || fcfg.Kind == format.Protobuf {
		// The published schemas carry native records: every action the
		// generator can write natively is written so; the few it writes
		// only as Segment (ad tracking, consent) are left out.
		*native = 1
	}
	if *subject == "" {
		*subject = *topic + "-value"
	}
	if *ratePerSec < 0 || *partitions < 1 || *partitions > 1<<20 || *replicas < -1 || *replicas > 1<<15-1 {
		fmt.Fprintln(io.Err, "produce: --rate must be >= 0, --partitions >= 1, --replication-factor >= -1")
		return 2
	}
	cfg := stream.Config{
		Profiles: *profiles, Audiences: *audiences, Events: *events, Seed: *seed,
		AudiencePrefix: *prefix, ProfilePrefix: *profPrefix, ConsentCategory: *consent,
		MalformedFraction: noneIfZero(*malformed), NativeFraction: noneIfZero(*native),
		Start: time.Now().UTC().Truncate(time.Millisecond),
	}
	if *start != "" {
		t, err := time.Parse(time.RFC3339Nano, *start)
		if err != nil {
			fmt.Fprintf(io.Err, "produce: --start: %v\n", err)
			return 2
		}
		cfg.Start = t
	}
	if *ratePerSec > 0 {
		// Event times then roughly follow the wall clock. One churn action
		// is about one and a half records.
		cfg.MeanGap = max(time.Nanosecond, time.Duration(1.5*float64(time.Second) / *ratePerSec))
	} else {
		cfg.MeanGap = time.Microsecond
	}
	gen, err := stream.New(cfg)
	if err != nil {
		fmt.Fprintf(io.Err, "produce: %v\n", err)
		return 2
	}
	seeds := splitList(*brokers)
	if len(seeds) == 0 {
		seeds = []string{"localhost:9092"}
	}
	var srcl *sr.Client
	if fcfg.Kind.Registered() {
		if srcl, err = registryClient(ff.registry); err != nil {
			fmt.Fprintf(io.Err, "produce: %v\n", err)
			return 2
		}
	}
	encode, err := newRecordEncoder(ctx, fcfg, srcl, *subject, *ceMode)
	if err != nil {
		fmt.Fprintf(io.Err, "produce: %v\n", err)
		return 1
	}
	p := producer{
		out: io.Out, errw: io.Err, topic: *topic, gen: gen, encode: encode, format: fcfg.Kind,
		rate: *ratePerSec, create: *create, partitions: int32(*partitions), replicas: int16(*replicas),
	}
	if err := p.run(ctx, seeds); err != nil {
		fmt.Fprintf(io.Err, "produce: %v\n", err)
		return 1
	}
	return 0
}

// registryClient returns a schema registry client for c, for registering
// the published schema.
func registryClient(c format.RegistryConfig) (*sr.Client, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("--registry: %w", err)
	}
	opts := []sr.ClientOpt{sr.URLs(c.URL), sr.UserAgent("pinsync-produce")}
	if c.Username != "" {
		opts = append(opts, sr.BasicAuth(c.Username, c.Password))
	}
	if c.BearerToken != "" {
		opts = append(opts, sr.BearerToken(c.BearerToken))
	}
	return sr.NewClient(opts...)
}

// noneIfZero maps a flag's "0 = none" onto stream.Config's "0 = default".
func noneIfZero(f float64) float64 {
	if f == 0 {
		return stream.None
	}
	return f
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// deliveryTimeout bounds how long a record may wait to be acknowledged.
const deliveryTimeout = 2 * time.Minute

// producer is one run of pinsync produce.
type producer struct {
	out, errw  io.Writer
	topic      string
	gen        *stream.Generator
	encode     recordEncoder
	format     format.Kind
	skipped    int // records the format cannot carry
	rate       float64
	create     bool
	partitions int32
	replicas   int16

	acked    atomic.Int64
	mu       sync.Mutex
	firstErr error // the first failed record's error
}

func (p *producer) fail(err error) (first bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.firstErr != nil {
		return false
	}
	p.firstErr = err
	return true
}

func (p *producer) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.firstErr
}

func (p *producer) run(ctx context.Context, seeds []string) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(seeds...),
		kgo.ClientID("pinsync-produce"),
		kgo.DefaultProduceTopic(p.topic),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), // murmur2 of the key, as the Java client
		// Idempotent writes are on by default; they keep at most five
		// requests in flight per broker, and the buffer bounds the rest.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.MaxBufferedRecords(50_000),
		// Unreachable brokers fail the run instead of blocking it forever.
		kgo.RecordDeliveryTimeout(deliveryTimeout),
	)
	if err != nil {
		return err
	}
	defer cl.Close()

	if p.create {
		_, err := kadm.NewClient(cl).CreateTopic(ctx, p.partitions, p.replicas, nil, p.topic)
		switch {
		case errors.Is(err, kerr.TopicAlreadyExists):
			fmt.Fprintf(p.errw, "produce: topic %s already exists; kept as it is\n", p.topic)
		case err != nil:
			return fmt.Errorf("create topic %s: %w", p.topic, err)
		default:
			fmt.Fprintf(p.errw, "produce: created topic %s with %d partitions\n", p.topic, p.partitions)
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// The limiter is asked for batches of about 10 ms worth of records:
	// waiting per record would be bounded by the timer's resolution.
	var lim *rate.Limiter
	batch := max(1, int(p.rate/100))
	if p.rate > 0 {
		lim = rate.NewLimiter(rate.Limit(p.rate), 2*batch)
	}
	n := 0

	began := time.Now()
	stopProgress := p.progress(began)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			if p.fail(err) {
				cancel(err) // stop generating: the run has failed
			}
			return
		}
		p.acked.Add(1)
	}
	st, genErr := p.gen.Run(func(r stream.Record) error {
		if lim != nil && n%batch == 0 {
			if err := lim.WaitN(ctx, batch); err != nil {
				return err
			}
		}
		n++
		if err := ctx.Err(); err != nil {
			return err
		}
		rec, ok := p.encode(n, r.Clone()) // the client keeps the bytes until the record is acknowledged
		if !ok {
			p.skipped++
			return nil
		}
		cl.Produce(ctx, rec, promise)
		return nil
	})
	// After an interrupt, records still buffered fail with the context:
	// the summary says how many were acknowledged.
	flushErr := cl.Flush(ctx)
	stopProgress()
	elapsed := time.Since(began)

	var errs []error
	if err := p.err(); err != nil {
		errs = append(errs, fmt.Errorf("produce failed: %w", err))
	} else {
		if genErr != nil {
			errs = append(errs, genErr)
		}
		if flushErr != nil {
			errs = append(errs, fmt.Errorf("flush: %w", flushErr))
		}
	}
	acked := p.acked.Load()
	fmt.Fprintf(p.out, "produced %d of %d records to %s in %s (%.0f records/s)\n",
		acked, st.Records-p.skipped, p.topic, elapsed.Round(time.Millisecond), float64(acked)/max(elapsed.Seconds(), 1e-9))
	if p.format != format.JSON {
		fmt.Fprintf(p.out, "  format %s", p.format)
		if p.skipped > 0 {
			fmt.Fprintf(p.out, "; %d Segment records left out (the native schema cannot carry them)", p.skipped)
		}
		fmt.Fprintln(p.out)
	}
	fmt.Fprintf(p.out, "  backfill %d, malformed %d, native %d; entries %d, exits %d, duplicates %d, new emails %d, new devices %d, tracking off %d, on %d, identifies %d, forgets %d, consent changes %d\n",
		st.Backfill, st.Malformed, st.Native, st.Entries, st.Exits, st.Duplicates, st.EmailsAdded,
		st.DevicesAdded, st.TrackingOff, st.TrackingOn, st.Identifies, st.Forgets, st.ConsentFlip)
	fmt.Fprintf(p.out, "  audiences: %s\n", strings.Join(p.gen.Audiences(), ", "))
	return errors.Join(errs...)
}

// progress prints the acknowledged count and rate on stderr once a second
// until the returned func is called.
func (p *producer) progress(began time.Time) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last, lastAt := int64(0), began
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				n := p.acked.Load()
				fmt.Fprintf(p.errw, "produce: %d records acknowledged, %.0f/s\n", n, float64(n-last)/now.Sub(lastAt).Seconds())
				last, lastAt = n, now
			}
		}
	}()
	return func() { close(done); <-finished }
}
