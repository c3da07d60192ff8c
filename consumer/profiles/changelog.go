package profiles

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/member"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// The changelog holds each input partition's profile state in a compacted
// topic co-partitioned with the input: changelog partition i holds the
// profiles of input partition i, written to partition i explicitly. It is
// written in the same transaction as the changes the state produced, so a
// new owner that restores it (reading committed records only) finds a
// state that the changes topic agrees with exactly. Each transaction ends
// with the partition's position: the input offset the state stands at.

// changelogKey is the record key of a profile of an input topic: the
// topic, 0x02 and the profile's key (a digest of its id, see profileKeyLen;
// never the id, which is often an email).
func changelogKey(topic, key string) string { return topic + "\x02" + key }

// legacyPrefix starts the keys of a version that keyed profiles by their
// plain id: topic, 0x00, id. A restore installs them under their digest
// and the first transaction deletes them.
func legacyPrefix(topic string) string { return topic + "\x00" }

// audienceKey is the record key of what the changelog keeps of an audience
// of an input topic: its display name and the ad-account override that
// decided its account, so that a restore resolves the audience as the
// events did (the profiles' records name audiences by key only).
func audienceKey(topic, key string) string { return topic + "\x03" + key }

// audienceValue encodes an audience's name and override.
func audienceValue(name, override string) []byte {
	b := []byte{audienceVersion}
	b = binary.AppendUvarint(b, uint64(len(name)))
	b = append(b, name...)
	b = binary.AppendUvarint(b, uint64(len(override)))
	return append(b, override...)
}

// parseAudienceValue decodes what audienceValue wrote.
func parseAudienceValue(b []byte) (name, override string, err error) {
	if len(b) < 1 || b[0] != audienceVersion {
		return "", "", errBadState
	}
	b = b[1:]
	var fields [2]string
	for i := range fields {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b[k:])) < n {
			return "", "", errBadState
		}
		fields[i] = string(b[k : k+int(n)])
		b = b[k+int(n):]
	}
	return fields[0], fields[1], nil
}

const audienceVersion = 1

// positionKey is the record key of an input topic's position: the next
// input offset (8 bytes, big endian) and its leader epoch (4 bytes) of
// the state written before it.
func positionKey(topic string) string { return topic + "\x01pos" }

func positionValue(next int64, leaderEpoch int32) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 12), uint64(next))
	return binary.BigEndian.AppendUint32(b, uint32(leaderEpoch))
}

const stateVersion = 1

// identifierRules ends every profile record written since pinsync hashes
// identifiers under Pinterest's rules (IDFAs uppercased). A record without
// it was written by a version that hashed IDFAs from their lower-case
// form, which Pinterest matches nobody by: a restore drops those IDFAs and
// removes them from the lists. Versions before it stop reading a record at
// its audiences, so they read records that carry it.
const identifierRules = 1

// codec encodes profiles for the changelog. Audience ids are local to a
// process, so the changelog names audiences by key.
type codec struct{ auds *audiences }

// encode writes p compactly: version, identifiers (type and 32-byte hash),
// then audiences by key with a member flag, then identifierRules.
func (c codec) encode(p *profile) []byte {
	n := 2 + len(p.ids)*33 + 2 + 1
	for _, a := range p.auds {
		n += 2 + len(c.auds.key(a&^outBit))
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
		key := c.auds.key(a &^ outBit)
		b = append(b, flag)
		b = binary.AppendUvarint(b, uint64(len(key)))
		b = append(b, key...)
	}
	return append(b, identifierRules)
}

// bound is the most encode would write of p once it also knows aud and
// holds maxIDs identifiers: what an event can take it to.
func (c codec) bound(p *profile, aud uint32, maxIDs int) int {
	const varint = binary.MaxVarintLen16 // counts and lengths stay below 1<<14
	n := 1 + varint + maxIDs*33 + varint + 1
	for _, a := range p.auds {
		n += 1 + varint + len(c.auds.key(a&^outBit))
	}
	return n + 1 + varint + len(c.auds.key(aud))
}

var errBadState = errors.New("changelog: malformed state record")

// ErrUnknownVersion is returned (wrapped) for a changelog record of a
// format version newer than this pinsync reads: written by a newer
// pinsync. It is never skipped (the profile would be lost) nor taken for a
// tombstone (a rebuild would drop its memberships).
var ErrUnknownVersion = errors.New("changelog: a record of a newer format version")

// StateVersion is the format version of the profile records this pinsync
// writes, and the newest it reads.
const StateVersion = stateVersion

// newerVersion reports an error when value (a profile's or an audience's
// record, not a tombstone) is of a format version after known.
func newerVersion(value []byte, known byte) error {
	if len(value) > 0 && value[0] > known {
		return fmt.Errorf("%w: version %d, this pinsync reads up to %d", ErrUnknownVersion, value[0], known)
	}
	return nil
}

// decode reads what encode wrote, interning audience keys. legacy reports
// a record of a version that hashed IDFAs in lower case (see
// identifierRules).
func (c codec) decode(b []byte) (p *profile, legacy bool, err error) {
	if len(b) < 1 || b[0] != stateVersion {
		return nil, false, errBadState
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1000 || len(b[k:]) < int(n)*33 {
		return nil, false, errBadState
	}
	b = b[k:]
	p = &profile{ids: make([]schemas.Identifier, n)}
	for i := range p.ids {
		p.ids[i].Type = ident.Type(b[0])
		copy(p.ids[i].Hash[:], b[1:33])
		b = b[33:]
	}
	na, k := binary.Uvarint(b)
	if k <= 0 || na > 1<<20 {
		return nil, false, errBadState
	}
	b = b[k:]
	p.auds = make([]uint32, 0, na)
	for i := uint64(0); i < na; i++ {
		if len(b) < 2 {
			return nil, false, errBadState
		}
		flag := b[0]
		l, k := binary.Uvarint(b[1:])
		if k <= 0 || uint64(len(b[1+k:])) < l {
			return nil, false, errBadState
		}
		key := string(b[1+k : 1+k+int(l)])
		b = b[1+k+int(l):]
		a := c.auds.internRestored(key)
		v := a.id
		if flag == 0 {
			v |= outBit
		}
		p.auds = append(p.auds, v)
	}
	switch {
	case len(b) == 0:
		return p, true, nil
	case len(b) == 1 && b[0] == identifierRules:
		return p, false, nil
	}
	return nil, false, errBadState
}

// restored is what a restore found besides the profiles.
type restored struct {
	profiles int
	// next and leaderEpoch are the position the state stands at; next is
	// -1 when the changelog holds no position (empty, or written by a
	// version that wrote none).
	next        int64
	leaderEpoch int32
	// empty reports that the changelog holds no committed record of the
	// partition: nobody ever committed its state (a first transaction
	// that aborted leaves only its marker).
	empty bool
	// legacy are the keys of profiles restored from records of a version
	// that keyed them by plain id: to delete.
	legacy []string
	// lowerIDFA removes from the lists the IDFAs of profiles restored from
	// records of a version that hashed IDFAs in lower case (see
	// identifierRules); the profiles were restored without them and are
	// rewritten by the next transaction.
	lowerIDFA []change
	// audiences are the audiences whose record the changelog holds.
	audiences []uint32
}

// restore reads input partition key's state from its changelog partition,
// committed records only, to the end, into state. The caller has fenced
// every earlier writer of the partition, so the end does not move.
func restore(ctx context.Context, kopts []kgo.Opt, changelog string, key partKey, state *profiles, c codec, skip func(offset int64)) (restored, error) {
	res := restored{next: -1, leaderEpoch: -1}
	rcl, err := changelogReader(kopts)
	if err != nil {
		return res, err
	}
	defer rcl.Close()
	ends, err := kadm.NewClient(rcl).ListCommittedOffsets(ctx, changelog)
	if err != nil {
		return res, fmt.Errorf("changelog end offsets: %w", err)
	}
	end, ok := ends.Lookup(changelog, key.partition)
	if !ok || end.Err != nil {
		if end.Err != nil {
			err = end.Err
		}
		return res, fmt.Errorf("changelog %s/%d: no end offset: %v", changelog, key.partition, err)
	}
	starts, err := kadm.NewClient(rcl).ListStartOffsets(ctx, changelog)
	if err != nil {
		return res, fmt.Errorf("changelog start offsets: %w", err)
	}
	start, _ := starts.Lookup(changelog, key.partition)
	if end.Offset <= start.Offset {
		res.empty = end.Offset == 0
		return res, nil
	}
	prefix, legacy, pk := key.topic+"\x02", legacyPrefix(key.topic), positionKey(key.topic)
	audPrefix := audienceKey(key.topic, "")
	seen := false
	lowerIDFA := map[string][]change{} // by profile key
	one := func(r *kgo.Record, k string) {
		if strings.HasPrefix(k, audPrefix) {
			seen = true
			name, override, err := parseAudienceValue(r.Value)
			if err != nil {
				skip(r.Offset)
				return
			}
			res.audiences = append(res.audiences, c.auds.restoreMeta(k[len(audPrefix):], name, override).id)
			return
		}
		if k == pk {
			if len(r.Value) == 12 {
				res.next = int64(binary.BigEndian.Uint64(r.Value))
				res.leaderEpoch = int32(binary.BigEndian.Uint32(r.Value[8:]))
			}
			return
		}
		var pkey string
		switch {
		case strings.HasPrefix(k, prefix) && len(k) == len(prefix)+profileKeyLen:
			pkey = k[len(prefix):]
		case strings.HasPrefix(k, legacy):
			// Rewritten under its digest, and deleted, by the
			// first transaction.
			pkey = state.keyOf(k[len(legacy):])
			res.legacy = append(res.legacy, k)
		case strings.HasPrefix(k, prefix):
			skip(r.Offset)
			return
		default:
			return
		}
		installed, dropped := restoreRecord(state, c, pkey, r.Value)
		delete(lowerIDFA, pkey) // the profile's last record decides
		if len(dropped) > 0 {
			lowerIDFA[pkey] = dropped
		}
		if installed {
			res.profiles++
			if strings.HasPrefix(k, legacy) {
				state.touch(pkey)
			}
		} else if r.Value != nil {
			skip(r.Offset)
		}
	}
	var newer error
	err = readWhile(ctx, rcl, changelog, map[int32]int64{key.partition: start.Offset}, map[int32]int64{key.partition: end.Offset}, func(r *kgo.Record) bool {
		k := string(r.Key)
		if k == pk || strings.HasPrefix(k, prefix) || strings.HasPrefix(k, legacy) {
			seen = true
		}
		known := byte(stateVersion)
		if strings.HasPrefix(k, audPrefix) {
			known = audienceVersion
		}
		if k != pk && (strings.HasPrefix(k, prefix) || strings.HasPrefix(k, legacy) || strings.HasPrefix(k, audPrefix)) {
			if err := newerVersion(r.Value, known); err != nil {
				newer = &halting{reason: member.HaltUnknownVersion, err: fmt.Errorf("record %d of %s/%d: %w: upgrade this replica "+
					"(every replica must read a format before any writes it)", r.Offset, changelog, key.partition, err)}
				return false
			}
		}
		one(r, k)
		return true
	})
	if err == nil {
		err = newer
	}
	if err != nil {
		return res, err
	}
	for pkey, dropped := range lowerIDFA {
		res.lowerIDFA = append(res.lowerIDFA, dropped...)
		state.touch(pkey) // rewritten without them
	}
	res.empty = !seen
	return res, nil
}

// changelogReader returns a client that reads committed records of the
// changelog, transaction markers included: reading then reaches the end
// even when the log ends with one.
func changelogReader(kopts []kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append(append([]kgo.Opt{}, kopts...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(64<<20), kgo.FetchMaxPartitionBytes(32<<20),
	)...)
}

// readTo reads partitions of topic with cl (a changelogReader), each from
// its offset in starts up to its offset in ends, and calls f with every
// record before the end that is not a transaction marker, in offset order
// within a partition.
func readTo(ctx context.Context, cl *kgo.Client, topic string, starts, ends map[int32]int64, f func(*kgo.Record)) error {
	return readWhile(ctx, cl, topic, starts, ends, func(r *kgo.Record) bool { f(r); return true })
}

// readWhile is readTo until f returns false.
func readWhile(ctx context.Context, cl *kgo.Client, topic string, starts, ends map[int32]int64, f func(*kgo.Record) bool) error {
	from := map[int32]kgo.Offset{}
	for p, end := range ends {
		if starts[p] < end {
			from[p] = kgo.NewOffset().At(starts[p])
		}
	}
	if len(from) == 0 {
		return nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{topic: from})
	done := make(map[int32]bool, len(from))
	for len(done) < len(from) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return fmt.Errorf("changelog fetch: %w", ferr)
		}
		stop := false
		fs.EachRecord(func(r *kgo.Record) {
			end := ends[r.Partition]
			if stop || done[r.Partition] || r.Offset >= end {
				done[r.Partition] = true
				return
			}
			if r.Offset+1 >= end {
				done[r.Partition] = true
			}
			if !r.Attrs.IsControl() && !f(r) {
				stop = true
			}
		})
		if stop {
			return nil
		}
	}
	return nil
}

// restoreRecord installs one changelog record of the profile of key (a nil
// value is a tombstone) into state. It reports whether a profile was
// installed; false with a non-nil value means malformed. A record of a
// version that hashed IDFAs in lower case is installed without its IDFAs,
// and dropped holds their removal from the lists of the profile's
// audiences.
func restoreRecord(state *profiles, c codec, key string, value []byte) (installed bool, dropped []change) {
	state.remove(key)
	if value == nil {
		return false, nil
	}
	p, legacy, err := c.decode(value)
	if err != nil {
		return false, nil
	}
	if legacy {
		kept := p.ids[:0]
		for _, id := range p.ids {
			if id.Type != ident.IDFA {
				kept = append(kept, id)
				continue
			}
			for _, a := range p.auds {
				if a&outBit == 0 {
					dropped = append(dropped, change{aud: a, typ: ident.IDFA, hash: id.Hash, op: opRemove})
				}
			}
		}
		p.ids = kept
	}
	state.countIn(p, 1)
	state.install(key, p)
	return true, dropped
}
