// Package deadletter reads pinsync's dead-letter topic and sends dead
// letters back once their cause is fixed: a record the decoder refused to
// the partition of the input it came from, a hash Pinterest refused to
// its list, through the changes topic.
//
// It remembers what it sent: for each reason, the position up to which
// the dead letters of that reason were redriven is the committed offset of
// a consumer group of its own on the dead-letter topic,
// "<group>.dlq-redrive.<reason>", committed after the records are
// produced. A redrive starts from there, so a dead letter is sent once
// (unless the process dies between the produce and the commit: then the
// next redrive sends them again). It never prints or returns a record's
// value beyond what a Letter holds.
package deadletter

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/profiles"
)

// The headers of a dead letter, as the profile stage (a record it could
// not decode) and the list stage (a hash Pinterest refused) write them.
const (
	headerReason          = "pinsync.reason"
	headerSourceTopic     = "pinsync.source.topic"
	headerSourcePartition = "pinsync.source.partition"
	headerSourceOffset    = "pinsync.source.offset"
	headerDecodeReason    = "pinsync.decode_reason"
	headerAudience        = "pinsync.audience"
	headerListType        = "pinsync.list_type"
	headerListID          = "pinsync.list_id"
	headerOperation       = "pinsync.operation"
	// HeaderRedrivenFrom marks a record a redrive produced:
	// "<dead-letter topic>/<partition>/<offset>" of its dead letter.
	HeaderRedrivenFrom = "pinsync.redriven_from"
)

// The reasons that are not the decoder's.
const (
	// ReasonRejected: Pinterest refused the hash for good (400).
	ReasonRejected = "pinterest_rejected"
	// ReasonTooLarge: a record too large to dead-letter whole; the
	// letter holds its first 64 KiB of key and of value, so it cannot be
	// sent back.
	ReasonTooLarge = "too_large"
	// ReasonStateTooLarge: an event that would have taken its profile's
	// changelog record past what the topics take; sent back, it is
	// applied once the limit allows it (see profiles.ReasonStateTooLarge).
	ReasonStateTooLarge = profiles.ReasonStateTooLarge
)

// Letter is one dead letter.
type Letter struct {
	Partition int32
	Offset    int64
	Time      time.Time
	Reason    string
	// The record the decoder refused (every reason but ReasonRejected):
	// where it was read, and for ReasonTooLarge the decoder's reason.
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	DecodeReason    string
	// The hash Pinterest refused (ReasonRejected): its list, the customer
	// list written and the operation (ADD or REMOVE).
	Audience, ListType, ListID, Operation string
	// Key and Value are the dead letter's: the refused record's (its head
	// for ReasonTooLarge), or no key and the hash in hex.
	Key, Value []byte
}

// Parse reads a dead letter from its record.
func Parse(r *kgo.Record) Letter {
	l := Letter{Partition: r.Partition, Offset: r.Offset, Time: r.Timestamp, Key: r.Key, Value: r.Value, SourcePartition: -1, SourceOffset: -1}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case headerReason:
			l.Reason = v
		case headerSourceTopic:
			l.SourceTopic = v
		case headerSourcePartition:
			if p, err := strconv.ParseInt(v, 10, 32); err == nil {
				l.SourcePartition = int32(p)
			}
		case headerSourceOffset:
			if o, err := strconv.ParseInt(v, 10, 64); err == nil {
				l.SourceOffset = o
			}
		case headerDecodeReason:
			l.DecodeReason = v
		case headerAudience:
			l.Audience = v
		case headerListType:
			l.ListType = v
		case headerListID:
			l.ListID = v
		case headerOperation:
			l.Operation = v
		}
	}
	return l
}

// Source is where the letter comes from: "<topic>/<partition>" of a
// refused record, "<audience>/<TYPE>" of a refused hash.
func (l Letter) Source() string {
	if l.Reason == ReasonRejected {
		return l.Audience + "/" + l.ListType
	}
	return l.SourceTopic + "/" + strconv.Itoa(int(l.SourcePartition))
}

// RedriveGroup is the consumer group whose committed offsets on the
// dead-letter topic say up to where the letters of reason were redriven.
func RedriveGroup(group, reason string) string { return group + ".dlq-redrive." + reason }

// Bounds returns, per partition of topic, the first offset kept and the
// last stable offset (every record before it is decided: a reader stops
// there rather than wait for open transactions). ok is false when the
// topic does not exist.
func Bounds(ctx context.Context, adm *kadm.Client, topic string) (start, end map[int32]int64, ok bool, err error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return nil, nil, false, fmt.Errorf("%s start offsets: %w", topic, err)
	}
	if _, ok := starts[topic]; !ok {
		return nil, nil, false, nil
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("%s end offsets: %w", topic, err)
	}
	start, end = map[int32]int64{}, map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) { start[o.Partition] = o.Offset })
	ends.Each(func(o kadm.ListedOffset) { end[o.Partition] = o.Offset })
	return start, end, true, nil
}

// Positions returns, for each reason, the offsets up to which its letters
// of topic were redriven (partitions without one are absent).
func Positions(ctx context.Context, adm *kadm.Client, group, topic string, reasons []string) (map[string]map[int32]int64, error) {
	groups := make([]string, len(reasons))
	for i, r := range reasons {
		groups[i] = RedriveGroup(group, r)
	}
	fetched := adm.FetchManyOffsets(ctx, groups...)
	out := map[string]map[int32]int64{}
	for i, r := range reasons {
		f := fetched[groups[i]]
		if errors.Is(f.Err, kerr.GroupIDNotFound) {
			f.Err = nil // never redriven (Kafka answers no offsets, some brokers this)
		}
		if f.Err != nil {
			return nil, fmt.Errorf("redrive position of %s: %w", r, f.Err)
		}
		out[r] = map[int32]int64{}
		f.Fetched.Each(func(o kadm.OffsetResponse) {
			if o.Topic == topic && o.Err == nil && o.At >= 0 {
				out[r][o.Partition] = o.At
			}
		})
	}
	return out, nil
}

// Read reads each partition of topic from its offset in from up to its
// offset in to (committed records only) and calls fn with every dead
// letter, in offset order within a partition. kopts are the connection
// options.
func Read(ctx context.Context, kopts []kgo.Opt, topic string, from, to map[int32]int64, fn func(Letter)) error {
	start := map[int32]kgo.Offset{}
	for p, end := range to {
		if from[p] < end {
			start[p] = kgo.NewOffset().At(from[p])
		}
	}
	if len(start) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, kopts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Transaction markers say how far a partition was read when its
		// last records are one.
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	left := len(start)
	done := map[int32]bool{}
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("reading %s: %w", topic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if done[r.Partition] {
				return
			}
			if r.Offset < to[r.Partition] && !r.Attrs.IsControl() {
				fn(Parse(r))
			}
			if r.Offset+1 >= to[r.Partition] {
				done[r.Partition] = true
				left--
			}
		})
	}
	return nil
}
