package demo

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/stream"
)

// checkEvery is how often Wait looks for convergence; progress is printed
// every progressEvery.
const (
	checkEvery    = 200 * time.Millisecond
	progressEvery = time.Second
	groupWait     = 30 * time.Second
)

// Wait forms the consumer group, produces the stream, and waits until the
// group has committed every record and every Pinterest list equals the
// oracle, or until the timeout (Config.Timeout from Start) or ctx ends. It
// returns the verdict; the demo keeps running until Close.
func (d *Demo) Wait(ctx context.Context) Result {
	ctx, cancel := context.WithDeadline(ctx, d.start.Add(d.cfg.Timeout))
	defer cancel()
	d.waitForGroup(ctx)
	p := d.produce(ctx)
	check := time.NewTicker(checkEvery)
	defer check.Stop()
	lastProgress := time.Now()
	for {
		select {
		case <-ctx.Done():
			<-p.done
			reason := "timed out after " + d.cfg.Timeout.String()
			if context.Cause(ctx) == context.Canceled {
				reason = "interrupted"
			}
			return d.verdict(p, reason)
		case <-check.C:
		}
		lag, lagErr := d.lag(ctx)
		if time.Since(lastProgress) >= progressEvery {
			lastProgress = time.Now()
			d.progress(p, lag, lagErr)
		}
		select {
		case <-p.done:
		default:
			continue
		}
		if p.err != nil {
			return d.verdict(p, "producing the stream failed: "+p.err.Error())
		}
		if lagErr != nil || lag != 0 {
			continue
		}
		if r := d.verdict(p, ""); r.Converged {
			d.progress(p, lag, nil)
			return r
		}
	}
}

// waitForGroup waits, within groupWait, until every replica owns
// partitions, so that the stream is consumed by the whole group from the
// start rather than rebalanced mid-way (which would be correct too, but
// repeats work).
func (d *Demo) waitForGroup(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, groupWait)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	want := min(d.cfg.Replicas, d.cfg.Partitions)
	for {
		owners, total, listOwners, listTotal := 0, 0, 0, 0
		counts := make([]int, len(d.replicas))
		for i, r := range d.replicas {
			counts[i] = int(metricSum(r.reg, "pinsync_assigned_partitions", nil))
			total += counts[i]
			if counts[i] > 0 {
				owners++
			}
			n := int(metricSum(r.reg, "pinsync_list_partitions", nil))
			listTotal += n
			if n > 0 {
				listOwners++
			}
		}
		if owners == want && total == d.cfg.Partitions && listOwners == want && listTotal == d.cfg.Partitions {
			fmt.Fprintf(d.cfg.Progress, "%5.1fs consumer group %q formed: %d replicas own %v of %d partitions\n",
				time.Since(d.start).Seconds(), Group, owners, counts, d.cfg.Partitions)
			return
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(d.cfg.Progress, "%5.1fs consumer group %q not settled (partitions per replica %v); producing anyway\n",
				time.Since(d.start).Seconds(), Group, counts)
			return
		case <-t.C:
		}
	}
}

// production is the stream being produced, and the oracle built from the
// same records. err, stats, oracle and rejected are set before done closes.
type production struct {
	done     chan struct{}
	acked    atomic.Int64
	err      error
	stats    stream.Stats
	oracle   *stream.Oracle
	rejected int
	audience []string
}

// produce generates the stream and produces it, record by record, to the
// partition of its key (murmur2, as a well-configured producer does),
// feeding each record to the oracle through the real decoder on the way.
// Nothing holds the whole stream in memory but the broker.
func (d *Demo) produce(ctx context.Context) *production {
	p := &production{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.err = d.produceInto(ctx, p)
	}()
	return p
}

func (d *Demo) produceInto(ctx context.Context, p *production) error {
	gen, err := stream.New(d.cfg.streamConfig())
	if err != nil {
		return err
	}
	p.audience = gen.Audiences()
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	p.oracle = stream.NewOracle(stream.DefaultMaxIdentifiersPerType)
	var ev schemas.Event
	var mu sync.Mutex
	var firstErr error
	p.stats, err = gen.Run(func(r stream.Record) error {
		if p.oracle.ApplyRecord(dec, &ev, r.Key, r.Value) != nil {
			p.rejected++
		}
		r = r.Clone()
		rec := &kgo.Record{Topic: Topic, Key: r.Key, Value: r.Value, Timestamp: r.Timestamp,
			Partition: stream.Partition(r.Key, d.cfg.Partitions)}
		cl.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			p.acked.Add(1)
		})
		return ctx.Err()
	})
	if err != nil {
		return err
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

// lag is the group's lag on the input topic: end offsets minus committed
// offsets, summed over partitions.
func (d *Demo) lag(ctx context.Context) (int64, error) {
	ends, err := d.adm.ListEndOffsets(ctx, Topic)
	if err != nil {
		return 0, err
	}
	if err := ends.Error(); err != nil {
		return 0, err
	}
	committed, err := d.adm.FetchOffsets(ctx, Group)
	if err != nil {
		return 0, err
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		c := int64(0)
		if r, ok := committed.Lookup(o.Topic, o.Partition); ok && r.Err == nil && r.At > 0 {
			c = r.At
		}
		lag += max(o.Offset-c, 0)
	})
	return lag, nil
}

// progress prints one line: what has been produced, consumed and
// uploaded, and the lag.
func (d *Demo) progress(p *production, lag int64, lagErr error) {
	var consumed, uploaded, calls, buffered float64
	for _, r := range d.replicas {
		consumed += metricSum(r.reg, "pinsync_events_total", nil)
		buffered += metricSum(r.reg, "pinsync_buffered_records", nil)
		// Every accepted write observes its record count here.
		n, sum := histogramCountSum(r.reg, "pinsync_records_per_request")
		calls += n
		uploaded += sum
	}
	lagS := fmt.Sprint(lag)
	if lagErr != nil {
		lagS = "?"
	}
	fmt.Fprintf(d.cfg.Progress, "%5.1fs produced %d/%d  consumed %.0f  buffered %.0f  uploaded %.0f records in %.0f calls  lag %s\n",
		time.Since(d.start).Seconds(), p.acked.Load(), d.cfg.Events, consumed, buffered, uploaded, calls, lagS)
}
