package consumer

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// The changelog holds each partition's profile state in a compacted topic
// co-partitioned with the input: changelog partition i holds the profiles
// of input partition i, written to partition i explicitly. It only ever
// holds uploaded effects: an epoch's snapshots are written after every
// upload holding the epoch's changes succeeded, and before its offsets are
// committed.

// stateRecord is one profile's state as written to the changelog: the
// input topic and profile id as key and its encoded state as value (nil: a
// tombstone).
type stateRecord struct {
	key   string
	value []byte
}

// changelogKey is the record key of a profile of an input topic.
func changelogKey(topic, profile string) string { return topic + "\x00" + profile }

// fenceKey is the record key of an input topic's fence: the offset (8
// bytes, big endian) below which an owner of the partition may have read
// (see worker.fence).
func fenceKey(topic string) string { return topic + "\x01fence" }

const stateVersion = 1

// encodeProfile writes p compactly: version, identifiers (type and 32-byte
// hash), then audiences by key with a member flag. Audience ids are local
// to a process, so the changelog names audiences by key.
func (e *Engine) encodeProfile(p *profile) []byte {
	n := 2 + len(p.ids)*33 + 2
	for _, a := range p.auds {
		n += 2 + len(e.audKey(a&^outBit))
	}
	b := make([]byte, 0, n)
	b = append(b, stateVersion)
	b = binary.AppendUvarint(b, uint64(len(p.ids)))
	for _, id := range p.ids {
		b = append(b, byte(id.Type))
		b = append(b, id.Hash[:]...)
	}
	b = binary.AppendUvarint(b, uint64(len(p.auds)))
	for _, a := range p.auds {
		flag := byte(1)
		if a&outBit != 0 {
			flag = 0
		}
		key := e.audKey(a &^ outBit)
		b = append(b, flag)
		b = binary.AppendUvarint(b, uint64(len(key)))
		b = append(b, key...)
	}
	return b
}

var errBadState = errors.New("changelog: malformed state record")

// decodeProfile reads what encodeProfile wrote, interning audience keys.
func (e *Engine) decodeProfile(b []byte) (*profile, error) {
	if len(b) < 1 || b[0] != stateVersion {
		return nil, errBadState
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1000 || len(b[k:]) < int(n)*33 {
		return nil, errBadState
	}
	b = b[k:]
	p := &profile{ids: make([]schemas.Identifier, n)}
	for i := range p.ids {
		p.ids[i].Type = ident.Type(b[0])
		copy(p.ids[i].Hash[:], b[1:33])
		b = b[33:]
	}
	na, k := binary.Uvarint(b)
	if k <= 0 || na > 1<<20 {
		return nil, errBadState
	}
	b = b[k:]
	p.auds = make([]uint32, 0, na)
	for i := uint64(0); i < na; i++ {
		if len(b) < 2 {
			return nil, errBadState
		}
		flag := b[0]
		l, k := binary.Uvarint(b[1:])
		if k <= 0 || uint64(len(b[1+k:])) < l {
			return nil, errBadState
		}
		key := string(b[1+k : 1+k+int(l)])
		b = b[1+k+int(l):]
		a := e.auds.intern(key, "", "")
		v := a.id
		if flag == 0 {
			v |= outBit
		}
		p.auds = append(p.auds, v)
	}
	return p, nil
}

// prepareChangelog creates the changelog topic when missing (compacted,
// with the input's partition count) and refuses a partition count that
// differs from the input's.
func (e *Engine) prepareChangelog(ctx context.Context, adm *kadm.Client) error {
	if !e.changelogOn() {
		return nil
	}
	details, err := adm.ListTopics(ctx, append([]string{e.cfg.ChangelogTopic}, e.cfg.Topics...)...)
	if err != nil {
		return fmt.Errorf("kafka: list topics: %w", err)
	}
	parts := -1
	for _, t := range e.cfg.Topics {
		d, ok := details[t]
		if !ok || d.Err != nil {
			return fmt.Errorf("kafka: input topic %q does not exist", t)
		}
		if parts >= 0 && len(d.Partitions) != parts {
			return fmt.Errorf("kafka: input topics have different partition counts (%q has %d, others %d); the changelog needs co-partitioned inputs", t, len(d.Partitions), parts)
		}
		parts = len(d.Partitions)
	}
	if d, ok := details[e.cfg.ChangelogTopic]; ok && d.Err == nil {
		if len(d.Partitions) != parts {
			return fmt.Errorf("kafka: changelog topic %q has %d partitions but the input has %d; it must be co-partitioned with the input (recreate it with %d partitions)",
				e.cfg.ChangelogTopic, len(d.Partitions), parts, parts)
		}
		return nil
	}
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, int32(parts), -1, map[string]*string{"cleanup.policy": &compact}, e.cfg.ChangelogTopic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("kafka: create changelog topic %q: %w", e.cfg.ChangelogTopic, err)
	}
	e.log.Info("created changelog topic", "topic", e.cfg.ChangelogTopic, "partitions", parts)
	return nil
}

func (e *Engine) changelogOn() bool { return e.cfg.ChangelogTopic != "-" }

// writeState produces the snapshots of one partition to its changelog
// partition and waits for every acknowledgement.
func (e *Engine) writeState(ctx context.Context, p *partTrack, snaps []stateRecord) error {
	if len(snaps) == 0 || !e.changelogOn() {
		return nil
	}
	recs := make([]*kgo.Record, len(snaps))
	for i, s := range snaps {
		recs[i] = &kgo.Record{Topic: e.cfg.ChangelogTopic, Partition: p.key.partition, Key: []byte(s.key), Value: s.value}
	}
	return e.cl.ProduceSync(ctx, recs...).FirstErr()
}

// restore reads a partition's state from its changelog partition, to its
// end, into w's profiles.
func (w *worker) restore(ctx context.Context) error {
	e := w.e
	if !e.changelogOn() {
		return nil
	}
	e.m.restoring.Inc()
	defer e.m.restoring.Dec()
	rcl, err := kgo.NewClient(append(append([]kgo.Opt{}, e.kopts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{
			e.cfg.ChangelogTopic: {w.key.partition: kgo.NewOffset().AtStart()},
		}),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(32<<20),
	)...)
	if err != nil {
		return err
	}
	defer rcl.Close()
	ends, err := kadm.NewClient(rcl).ListEndOffsets(ctx, e.cfg.ChangelogTopic)
	if err != nil {
		return fmt.Errorf("changelog end offsets: %w", err)
	}
	end, ok := ends.Lookup(e.cfg.ChangelogTopic, w.key.partition)
	if !ok || end.Err != nil || end.Offset <= 0 {
		// Nobody ever read this partition: every fence is written there
		// before reading.
		w.vouchFrom = -1
		return nil
	}
	prefix, fk := w.key.topic+"\x00", fenceKey(w.key.topic)
	restored := 0
	fence, fenced := int64(-1), false
	for next := int64(0); next < end.Offset; {
		fs := rcl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("changelog fetch: %w", ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			next = r.Offset + 1
			k := string(r.Key)
			if k == fk {
				if len(r.Value) == 8 {
					fence, fenced = max(fence, int64(binary.BigEndian.Uint64(r.Value))), true
				}
				return
			}
			if !strings.HasPrefix(k, prefix) {
				return
			}
			if w.restoreRecord(k, len(prefix), r.Value) {
				restored++
			} else if r.Value != nil {
				e.log.Warn("skipping malformed changelog record", "partition", w.key.partition, "offset", r.Offset)
			}
		})
	}
	// Without a fence (state written by a version that kept none) no
	// change is vouched for.
	if fenced || restored == 0 {
		w.vouchFrom = fence
	}
	e.m.restored.Add(float64(restored))
	e.log.Info("state restored", "topic", w.key.topic, "partition", w.key.partition, "profiles", w.state.t.len(), "vouched_from", w.vouchFrom)
	return nil
}

// restoreRecord installs one changelog record (key k, the profile id from
// k[idAt:]; a nil value is a tombstone) into w's state. It reports whether
// a profile was installed; false with a non-nil value means malformed.
func (w *worker) restoreRecord(k string, idAt int, value []byte) bool {
	profileID := k[idAt:]
	w.state.remove(profileID)
	if value == nil {
		return false
	}
	p, err := w.e.decodeProfile(value)
	if err != nil {
		return false
	}
	for _, a := range p.auds {
		if a&outBit == 0 {
			w.state.members(a, 1)
		}
	}
	w.state.install(profileID, p)
	return true
}
