// Package control owns the control topic: a single-partition, compacted
// Kafka topic shared by every replica of a deployment, read by each from its
// start. It holds four things:
//
//   - the list registry (Registry): each Pinterest list's customer list and
//     audience ids, written by the list's owner when it creates or finds
//     them, so that a new owner never looks a list up by name;
//   - the shared OAuth token (TokenStore), encrypted, and the claims with
//     which replicas take turns to refresh it;
//   - the deployment's Layout: the changes topic's partition count and id,
//     fixed once, so that replicas never place lists two ways;
//   - the running processes (Instance): where each one's HTTP server is
//     reached, announced at start and every minute, withdrawn at a clean
//     stop, so that one view of the deployment can gather every /status.
//
// Log is the primitive below them all: it tails the topic and hands every
// record, in offset order, to one Apply function. The order of the log is
// the order every replica agrees on, so "the first claim in the log wins"
// needs no other coordination. Topic dispatches the records of one Log to
// the registry and the token store, so a process reads the topic once.
package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Record is one record of the control log.
type Record struct {
	Key    string
	Value  []byte // nil: a tombstone
	Offset int64
	// Time is the record's timestamp (the appender's clock).
	Time time.Time
}

// LogConfig configures a Log.
type LogConfig struct {
	// Kafka holds the connection options (brokers, TLS, SASL, client id).
	// Group options are ignored: the log is read without a group.
	Kafka []kgo.Opt
	// Topic is the control topic. It is created when missing: one
	// partition, compacted, with a compaction lag long enough that claims
	// in progress are never compacted away.
	Topic string
	// Apply is called for every record, in offset order, from one
	// goroutine. It must not block.
	Apply func(Record)
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Validate reports a missing field.
func (c LogConfig) Validate() error {
	var errs []error
	if c.Topic == "" {
		errs = append(errs, errors.New("control: Topic is required"))
	}
	if c.Apply == nil {
		errs = append(errs, errors.New("control: Apply is required"))
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by the methods of a closed Log.
var ErrClosed = errors.New("control: log closed")

// compactionLag keeps records at least this long before compaction may
// drop superseded ones, so that a claim and the claims competing with it
// are all read by every replica in order.
const compactionLag = "86400000" // 24h in ms

// Log is a tailed control topic. Its methods are safe for concurrent use.
type Log struct {
	cfg    LogConfig
	cl     *kgo.Client
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	next    int64         // offset after the last applied record
	changed chan struct{} // closed and replaced after each applied batch
	err     error         // set when the tail stopped
}

// OpenLog creates the topic when missing and starts tailing it from its
// start. Close the Log when done.
func OpenLog(ctx context.Context, cfg LogConfig) (*Log, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := append(append([]kgo.Opt{}, cfg.Kafka...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.FetchMaxWait(200*time.Millisecond),
		// An append the broker cannot take fails (its caller retries
		// later) rather than hanging.
		kgo.RecordDeliveryTimeout(30*time.Second),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("control: kafka client: %w", err)
	}
	if err := ensureTopic(ctx, kadm.NewClient(cl), cfg.Topic); err != nil {
		cl.Close()
		return nil, err
	}
	tctx, cancel := context.WithCancel(context.Background())
	l := &Log{cfg: cfg, cl: cl, log: log, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	go l.tail(tctx)
	return l, nil
}

func ensureTopic(ctx context.Context, adm *kadm.Client, topic string) error {
	details, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("control: list topics: %w", err)
	}
	if d, ok := details[topic]; ok && d.Err == nil {
		if len(d.Partitions) != 1 {
			return fmt.Errorf("control: topic %q has %d partitions; the control log needs exactly one (its order is the replicas' agreement)", topic, len(d.Partitions))
		}
		rcs, err := adm.DescribeTopicConfigs(ctx, topic)
		if err != nil {
			return fmt.Errorf("control: describe topic %q: %w", topic, err)
		}
		rc, err := rcs.On(topic, nil)
		if err != nil {
			return fmt.Errorf("control: describe topic %q: %w", topic, err)
		}
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && (c.Value == nil || *c.Value != "compact") {
				v := "delete"
				if c.Value != nil {
					v = *c.Value
				}
				return fmt.Errorf("control: topic %q has cleanup.policy=%s; the control log must be compacted only (cleanup.policy=compact), or list ids and the token are lost", topic, v)
			}
		}
		return nil
	}
	compact, lag := "compact", compactionLag
	resp, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact, "min.compaction.lag.ms": &lag}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("control: create topic %q: %w", topic, err)
	}
	return nil
}

func (l *Log) tail(ctx context.Context) {
	defer close(l.done)
	for {
		fs := l.cl.PollFetches(ctx)
		if ctx.Err() != nil || fs.IsClientClosed() {
			l.stop(ErrClosed)
			return
		}
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.Canceled) {
				l.log.Warn("control log fetch error", "topic", l.cfg.Topic, "err", err)
			}
		})
		last := int64(-1)
		fs.EachRecord(func(r *kgo.Record) {
			l.cfg.Apply(Record{Key: string(r.Key), Value: r.Value, Offset: r.Offset, Time: r.Timestamp})
			last = r.Offset
		})
		if last >= 0 {
			l.mu.Lock()
			l.next = last + 1
			close(l.changed)
			l.changed = make(chan struct{})
			l.mu.Unlock()
		}
	}
}

func (l *Log) stop(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		l.err = err
		close(l.changed)
	}
}

// Append writes a record to the log and returns its offset once the
// broker acknowledged it. The record has not necessarily been applied yet;
// use WaitApplied.
func (l *Log) Append(ctx context.Context, key string, value []byte) (int64, error) {
	r := &kgo.Record{Topic: l.cfg.Topic, Partition: 0, Key: []byte(key), Value: value}
	if err := l.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return -1, fmt.Errorf("control: append %q: %w", key, err)
	}
	return r.Offset, nil
}

// WaitApplied waits until the record at offset has been applied.
func (l *Log) WaitApplied(ctx context.Context, offset int64) error {
	return l.WaitFor(ctx, 0, func() bool { return l.applied() > offset })
}

func (l *Log) applied() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.next
}

// CatchUp waits until every record appended before the call has been
// applied.
func (l *Log) CatchUp(ctx context.Context) error {
	// A topic created a moment ago may not be in every broker's metadata
	// yet: its end is asked again, a few times.
	var end kadm.ListedOffset
	for wait := 50 * time.Millisecond; ; wait *= 2 {
		ends, err := kadm.NewClient(l.cl).ListEndOffsets(ctx, l.cfg.Topic)
		if err != nil {
			return fmt.Errorf("control: end offset: %w", err)
		}
		var ok bool
		if end, ok = ends.Lookup(l.cfg.Topic, 0); ok && end.Err == nil {
			break
		}
		if wait > time.Second {
			if !ok {
				return fmt.Errorf("control: no end offset for %q", l.cfg.Topic)
			}
			return fmt.Errorf("control: end offset: %w", end.Err)
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(wait):
		}
	}
	return l.WaitFor(ctx, 0, func() bool { return l.applied() >= end.Offset })
}

// WaitFor waits until cond holds, checking it after every applied batch
// and, when every is positive, at least that often (for conditions that
// depend on the clock). cond is called without the Log's lock held.
func (l *Log) WaitFor(ctx context.Context, every time.Duration, cond func() bool) error {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		l.mu.Lock()
		ch, err := l.changed, l.err
		l.mu.Unlock()
		if cond() {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case <-ch:
		case <-tick:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// Close stops tailing and closes the Kafka client.
func (l *Log) Close() {
	l.cancel()
	<-l.done
	l.cl.Close()
}
