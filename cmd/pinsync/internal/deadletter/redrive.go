package deadletter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/schemas/ident"
)

// Source is what a redrive reads.
type Source struct {
	// Kafka are the connection options; Admin a client on them.
	Kafka []kgo.Opt
	Admin *kadm.Client
	// Group is the deployment's group (kafka.group) and Topic its
	// dead-letter topic.
	Group, Topic string
	// Members returns the members of lists now, as the profile state
	// holds them (profiles.Members); nil when there is no changelog: a
	// refused hash is then sent back as its dead letter says.
	Members func(ctx context.Context, lists []changes.List) (map[changes.List][]ident.Hash, error)
	// AdAccount returns the ad account of a list a refused hash belongs
	// to, given the customer list it was refused for.
	AdAccount func(l changes.List, listID string) string
}

// Redrive is what a redrive sends back and what it leaves alone.
type Redrive struct {
	// Topic is the dead-letter topic.
	Topic string
	// Republish are the refused records to produce again, to the partition
	// they came from, in the order they were dead-lettered.
	Republish []Letter
	// Requeue are the refused hashes to write to their lists again.
	Requeue []Requeue
	// Skipped are the dead letters left alone, with why.
	Skipped []Skipped
	// Before counts the dead letters an earlier redrive sent.
	Before int
	// Commit are the positions to record once everything is sent: by
	// reason, the offset of each partition read to.
	Commit map[string]map[int32]int64
}

// Requeue is a refused hash written to its list again.
type Requeue struct {
	Letter
	List      changes.List
	Hash      ident.Hash
	Op        changes.Op
	AdAccount string
}

// Skipped is a dead letter left alone.
type Skipped struct {
	Letter
	Why string
}

// Why a dead letter is left alone.
const (
	WhyTooLarge     = "kept as its first 64 KiB of key and value: the record itself is lost, it cannot be sent back"
	WhyMalformed    = "not a dead letter this version can send back (no source, list or hash)"
	WhyNotMember    = "not in the audience now, and only added: the list does not hold it"
	WhyDuplicateFor = "refused again for the same list: its hash is sent once"
)

// Plan reads, for each reason of scope, the dead letters no redrive sent
// yet and says what a redrive does with each. A refused hash is written
// as the change that brings its list to where the audience stands now
// (Source.Members; see planRequeue).
func Plan(ctx context.Context, src Source, scope []string) (Redrive, error) {
	r := Redrive{Topic: src.Topic, Commit: map[string]map[int32]int64{}}
	start, end, ok, err := Bounds(ctx, src.Admin, src.Topic)
	if err != nil || !ok {
		return r, err
	}
	pos, err := Positions(ctx, src.Admin, src.Group, src.Topic, scope)
	if err != nil {
		return r, err
	}
	from := map[int32]int64{}
	for p := range end {
		from[p] = end[p]
		for _, reason := range scope {
			at, ok := pos[reason][p]
			if !ok {
				at = start[p]
			}
			from[p] = max(min(from[p], at), start[p])
		}
	}
	var refused []Letter
	err = Read(ctx, src.Kafka, src.Topic, from, end, func(l Letter) {
		at, ok := pos[l.Reason]
		if !ok {
			return // out of scope
		}
		if r.Commit[l.Reason] == nil {
			r.Commit[l.Reason] = end
		}
		if p, ok := at[l.Partition]; ok && l.Offset < p {
			r.Before++
			return
		}
		switch {
		case l.Reason == ReasonTooLarge:
			r.Skipped = append(r.Skipped, Skipped{l, WhyTooLarge})
		case l.Reason == ReasonRejected:
			refused = append(refused, l)
		case l.SourceTopic == "" || l.SourcePartition < 0:
			r.Skipped = append(r.Skipped, Skipped{l, WhyMalformed})
		default:
			r.Republish = append(r.Republish, l)
		}
	})
	if err != nil {
		return r, err
	}
	return r, planRequeue(ctx, src, refused, &r)
}

// planRequeue decides, for each list and refused hash, the change to
// write: an add when the hash is a member's now; a remove when it is not
// and a removal of it was refused (the list may hold it); nothing when it
// is not and only adds were refused (the list never held it). Without the
// members, the last refused operation is written again.
func planRequeue(ctx context.Context, src Source, refused []Letter, r *Redrive) error {
	type ref struct {
		list changes.List
		hash ident.Hash
	}
	var lists []changes.List
	var todo []Requeue
	at := map[ref]int{}       // index in todo
	removed := map[ref]bool{} // a removal was refused
	for _, l := range refused {
		t, terr := ident.ParseType(l.ListType)
		h, ok := ident.ParseHex(string(l.Value))
		if terr != nil || !ok || l.Audience == "" || (l.Operation != "ADD" && l.Operation != "REMOVE") {
			r.Skipped = append(r.Skipped, Skipped{l, WhyMalformed})
			continue
		}
		op := changes.Add
		if l.Operation == "REMOVE" {
			op = changes.Remove
		}
		k := ref{changes.List{Audience: l.Audience, Type: t}, h}
		removed[k] = removed[k] || op == changes.Remove
		if i, dup := at[k]; dup {
			r.Skipped = append(r.Skipped, Skipped{todo[i].Letter, WhyDuplicateFor})
			todo[i].Letter, todo[i].Op = l, op
			continue
		}
		at[k] = len(todo)
		if !slices.Contains(lists, k.list) {
			lists = append(lists, k.list)
		}
		todo = append(todo, Requeue{Letter: l, List: k.list, Hash: h, Op: op, AdAccount: src.AdAccount(k.list, l.ListID)})
	}
	if len(todo) == 0 || src.Members == nil {
		r.Requeue = todo
		return nil
	}
	members, err := src.Members(ctx, lists)
	if err != nil {
		return fmt.Errorf("the audiences' members: %w", err)
	}
	for _, q := range todo {
		_, member := slices.BinarySearchFunc(members[q.List], q.Hash, func(a, b ident.Hash) int { return bytes.Compare(a[:], b[:]) })
		switch {
		case member:
			q.Op = changes.Add
		case removed[ref{q.List, q.Hash}]:
			q.Op = changes.Remove
		default:
			r.Skipped = append(r.Skipped, Skipped{q.Letter, WhyNotMember})
			continue
		}
		r.Requeue = append(r.Requeue, q)
	}
	return nil
}

// Send produces what r sends back: each refused record to the partition it
// came from, with its key and value and a HeaderRedrivenFrom, and each
// refused hash as a change of its list to the changes topic (of
// changesPartitions partitions, placed as the profile stage places it), so
// that the list's owner uploads it. It returns once the brokers have all
// of it.
func Send(ctx context.Context, kopts []kgo.Opt, r Redrive, changesTopic string, changesPartitions int) error {
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, kopts...),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RecordDeliveryTimeout(30*time.Second),
	)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	var mu sync.Mutex
	var errs []error
	done := func(_ *kgo.Record, err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	for _, l := range r.Republish {
		cl.Produce(ctx, &kgo.Record{Topic: l.SourceTopic, Partition: l.SourcePartition, Key: l.Key, Value: l.Value,
			Headers: []kgo.RecordHeader{{Key: HeaderRedrivenFrom, Value: r.from(l)}}}, done)
	}
	part := changes.NewPartitioner(changesPartitions)
	now := time.Now().UnixMilli()
	for _, q := range r.Requeue {
		key := q.List.AppendKey(nil)
		cl.Produce(ctx, &kgo.Record{Topic: changesTopic, Partition: part.Partition(key), Key: key,
			Value:   changes.AppendValue(nil, changes.Header{AdAccount: q.AdAccount}, []changes.Change{{Hash: q.Hash, Op: q.Op, TS: now}}),
			Headers: []kgo.RecordHeader{{Key: HeaderRedrivenFrom, Value: r.from(q.Letter)}}}, done)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// from is the HeaderRedrivenFrom of what is sent back for l.
func (r Redrive) from(l Letter) []byte {
	return []byte(r.Topic + "/" + strconv.Itoa(int(l.Partition)) + "/" + strconv.FormatInt(l.Offset, 10))
}

// Commit records r's positions: the letters read are not sent again.
func Commit(ctx context.Context, adm *kadm.Client, group, topic string, r Redrive) error {
	for reason, at := range r.Commit {
		var os kadm.Offsets
		for p, o := range at {
			os.Add(kadm.Offset{Topic: topic, Partition: p, At: o, LeaderEpoch: -1})
		}
		resp, err := adm.CommitOffsets(ctx, RedriveGroup(group, reason), os)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return fmt.Errorf("recording the redrive of %s: %w", reason, err)
		}
	}
	return nil
}
