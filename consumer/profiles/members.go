package profiles

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/schemas/ident"
)

// MemberReader reads, from the changelog, the hashes of every member of
// lists' audiences, of each list's identifier type: what the lists hold
// when they are exact. It is how lists are rebuilt (package lists/sink).
// It reads one changelog partition at a time, or one key range of one
// (Read), so that what it holds is bounded: the changelog is partitioned
// like the input, by profile, so each profile is in one partition.
//
// The state a Read returns stands after every transaction that wrote a
// change the list stage has read before the call: it first waits until
// every transaction open at the call on that partition is decided (the
// profile stage's transactions last one commit interval), then reads the
// committed records to there. A change read after the call may be in the
// result already; applying it again on top is harmless, as a change says
// where the list stands for its record.
type MemberReader struct {
	kopts      []kgo.Opt
	cl         *kgo.Client // for the admin requests
	adm        *kadm.Client
	changelog  string
	partitions []int32
	maxBytes   int64
}

// DefaultRebuildBytes is the most a MemberReader holds by default.
const DefaultRebuildBytes = 64 << 20

// OpenMemberReader opens a reader of the changelog that holds at most
// maxBytes (DefaultRebuildBytes when zero) for one Read. Close it after
// use.
func OpenMemberReader(ctx context.Context, kopts []kgo.Opt, changelog string, maxBytes int64) (*MemberReader, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultRebuildBytes
	}
	cl, err := changelogReader(kopts)
	if err != nil {
		return nil, err
	}
	adm := kadm.NewClient(cl)
	td, err := adm.ListTopics(ctx, changelog)
	if err == nil {
		err = td.Error()
	}
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("changelog %s: %w", changelog, err)
	}
	r := &MemberReader{kopts: kopts, cl: cl, adm: adm, changelog: changelog, maxBytes: maxBytes}
	for p := range td[changelog].Partitions {
		r.partitions = append(r.partitions, p)
	}
	slices.Sort(r.partitions)
	return r, nil
}

// Close releases the reader's connections.
func (r *MemberReader) Close() { r.cl.Close() }

// Partitions are the changelog's partitions, in order.
func (r *MemberReader) Partitions() []int32 { return slices.Clone(r.partitions) }

// Read returns the members of each of lists among the profiles of
// changelog partition p whose key falls in key range part of parts (every
// profile of p when parts is 1), each list's hashes sorted. It reports
// fits false, with nothing, when what it would hold passes the reader's
// bound: read the partition again in more key ranges.
func (r *MemberReader) Read(ctx context.Context, p int32, part, parts int, lists []changes.List) (map[changes.List][]ident.Hash, bool, error) {
	if parts < 1 || part < 0 || part >= parts {
		return nil, false, fmt.Errorf("profiles: key range %d of %d", part, parts)
	}
	end, err := readableEnd(ctx, r.adm, r.changelog, p)
	if err != nil {
		return nil, false, err
	}
	starts, err := r.adm.ListStartOffsets(ctx, r.changelog)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, false, fmt.Errorf("changelog start offsets: %w", err)
	}
	start, _ := starts.Lookup(r.changelog, p)
	// A client of its own: a read stopped early leaves fetches behind.
	cl, err := changelogReader(r.kopts)
	if err != nil {
		return nil, false, err
	}
	defer cl.Close()
	types := map[string][]ident.Type{} // by audience
	for _, l := range lists {
		if !slices.Contains(types[l.Audience], l.Type) {
			types[l.Audience] = append(types[l.Audience], l.Type)
		}
	}
	// The last record of each profile decides (a compacted topic): its
	// identifiers and the wanted audiences it is in.
	byProfile := map[string]heldMember{}
	var held int64
	var in []string
	fits := true
	var newer error
	err = readWhile(ctx, cl, r.changelog, map[int32]int64{p: start.Offset}, map[int32]int64{p: end}, func(rec *kgo.Record) bool {
		if !isProfileKey(rec.Key) || (parts > 1 && keyRange(rec.Key, parts) != part) {
			return true
		}
		if err := newerVersion(rec.Value, stateVersion); err != nil {
			// Not a tombstone: what it says of its profile is unknown.
			newer = fmt.Errorf("record %d of %s/%d: %w: upgrade this replica", rec.Offset, r.changelog, p, err)
			return false
		}
		if old, ok := byProfile[string(rec.Key)]; ok {
			held -= old.bytes()
			delete(byProfile, string(rec.Key))
		}
		ids, legacy, ok := memberships(rec.Value, types, &in)
		if !ok || len(in) == 0 {
			return true
		}
		if legacy {
			ids = withoutIDFA(ids) // hashed in lower case: matches nobody
		} else {
			ids = bytes.Clone(ids)
		}
		m := heldMember{key: string(rec.Key), ids: ids, in: slices.Clone(in)}
		byProfile[m.key] = m
		if held += m.bytes(); held > r.maxBytes {
			fits = false
		}
		return fits
	})
	if err == nil {
		err = newer
	}
	if err != nil || !fits {
		return nil, false, err
	}
	out := make(map[changes.List][]ident.Hash, len(lists))
	for _, l := range lists {
		out[l] = nil
	}
	for _, m := range byProfile {
		for _, aud := range m.in {
			for _, t := range types[aud] {
				l := changes.List{Type: t, Audience: aud}
				out[l] = appendHashes(out[l], m.ids, t)
			}
		}
	}
	for l, hs := range out {
		slices.SortFunc(hs, func(a, b ident.Hash) int { return bytes.Compare(a[:], b[:]) })
		out[l] = slices.Compact(hs)
	}
	return out, true, nil
}

// heldMember is what a Read holds of a profile in one of the audiences.
type heldMember struct {
	key string
	ids []byte
	in  []string
}

// bytes is what m costs a Read: the profile's entry and the hashes it adds
// to the result (at most one per identifier and audience).
func (m heldMember) bytes() int64 {
	const entry = 48 + 16 + 24 + 24 // map slot, key, ids and in headers
	n := entry + len(m.key) + len(m.ids)
	for _, a := range m.in {
		n += 16 + len(a) + len(m.ids) // each audience may take every hash
	}
	return int64(n)
}

// keyRange places a changelog key in one of parts key ranges.
func keyRange(key []byte, parts int) int {
	h := fnv.New32a()
	h.Write(key)
	return int(h.Sum32() % uint32(parts))
}

// Members reads the members of lists from every partition of the
// changelog, each partition in as many key ranges as the reader's bound
// needs (pinsync resync --dry-run and pinsync dlq read audiences this
// way). The result holds 32 bytes per member and list.
func Members(ctx context.Context, kopts []kgo.Opt, changelog string, lists []changes.List) (map[changes.List][]ident.Hash, error) {
	r, err := OpenMemberReader(ctx, kopts, changelog, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	out := make(map[changes.List][]ident.Hash, len(lists))
	for _, l := range lists {
		out[l] = nil
	}
	for _, p := range r.Partitions() {
		for parts, part := 1, 0; part < parts; {
			got, fits, err := r.Read(ctx, p, part, parts, lists)
			if err != nil {
				return nil, err
			}
			if !fits {
				parts, part = 2*parts, 0
				continue
			}
			for l, hs := range got {
				out[l] = append(out[l], hs...)
			}
			part++
		}
	}
	for l, hs := range out {
		slices.SortFunc(hs, func(a, b ident.Hash) int { return bytes.Compare(a[:], b[:]) })
		out[l] = slices.Compact(hs)
	}
	return out, nil
}

// readableEnd returns the offset of changelog partition p up to which
// every record is decided, having waited until it reaches the partition's
// end at the call.
func readableEnd(ctx context.Context, adm *kadm.Client, changelog string, p int32) (int64, error) {
	hw, err := adm.ListEndOffsets(ctx, changelog)
	if err == nil {
		err = hw.Error()
	}
	if err != nil {
		return 0, fmt.Errorf("changelog end offsets: %w", err)
	}
	h, ok := hw.Lookup(changelog, p)
	if !ok {
		return 0, fmt.Errorf("changelog %s has no partition %d", changelog, p)
	}
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		lso, err := adm.ListCommittedOffsets(ctx, changelog)
		if err == nil {
			err = lso.Error()
		}
		if err != nil {
			return 0, fmt.Errorf("changelog committed offsets: %w", err)
		}
		if l, _ := lso.Lookup(changelog, p); l.Offset >= h.Offset {
			return l.Offset, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("changelog: waiting for open transactions: %w", ctx.Err())
		case <-time.After(wait):
		}
	}
}

// isProfileKey reports whether a changelog record's key is a profile's:
// topic, 0x02 and its digest, or, written by a version that keyed profiles
// by id, topic, 0x00 and the id. (A profile restored from such a record is
// written under its digest, and the record deleted, in one transaction:
// until then both may be read, holding the same identifiers.)
func isProfileKey(k []byte) bool {
	if i := bytes.IndexByte(k, 0x02); i >= 0 && len(k)-i-1 == profileKeyLen && bytes.IndexByte(k[:i], 0) < 0 {
		return true
	}
	return bytes.IndexByte(k, 0) >= 0
}

// memberships decodes a profile record (see codec.encode) far enough to
// return its identifiers (type and hash, 33 bytes each) and, in *in, the
// audiences of want it is a member of; legacy reports a record of a version
// that hashed IDFAs in lower case (see identifierRules). A tombstone or a
// malformed record reports false.
func memberships(b []byte, want map[string][]ident.Type, in *[]string) (ids []byte, legacy, ok bool) {
	*in = (*in)[:0]
	if len(b) < 1 || b[0] != stateVersion {
		return nil, false, false
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1000 || len(b[k:]) < int(n)*33 {
		return nil, false, false
	}
	ids = b[k : k+int(n)*33]
	b = b[k+int(n)*33:]
	na, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, false, false
	}
	b = b[k:]
	for i := uint64(0); i < na; i++ {
		if len(b) < 2 {
			return nil, false, false
		}
		flag := b[0]
		l, k := binary.Uvarint(b[1:])
		if k <= 0 || uint64(len(b[1+k:])) < l {
			return nil, false, false
		}
		if aud := b[1+k : 1+k+int(l)]; flag == 1 {
			if _, wanted := want[string(aud)]; wanted {
				*in = append(*in, string(aud))
			}
		}
		b = b[1+k+int(l):]
	}
	switch {
	case len(b) == 0:
		return ids, true, true
	case len(b) == 1 && b[0] == identifierRules:
		return ids, false, true
	}
	return nil, false, false
}

// withoutIDFA returns a copy of ids (see memberships) without its IDFAs.
func withoutIDFA(ids []byte) []byte {
	out := make([]byte, 0, len(ids))
	for ; len(ids) >= 33; ids = ids[33:] {
		if ident.Type(ids[0]) != ident.IDFA {
			out = append(out, ids[:33]...)
		}
	}
	return out
}

// appendHashes appends the hashes of type t among ids (see memberships).
func appendHashes(hs []ident.Hash, ids []byte, t ident.Type) []ident.Hash {
	for ; len(ids) >= 33; ids = ids[33:] {
		if ident.Type(ids[0]) == t {
			var h ident.Hash
			copy(h[:], ids[1:33])
			hs = append(hs, h)
		}
	}
	return hs
}
