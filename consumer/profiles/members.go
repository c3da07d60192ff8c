package profiles

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/schemas/ident"
)

// Members reads, from the changelog, the hashes of every member of each
// list's audience of the list's identifier type: what the lists hold when
// they are exact. It is how lists are rebuilt (package lists), several in
// one read.
//
// The state it reads stands after every transaction that wrote a change
// the list stage has read before the call: it first waits, for every
// changelog partition, until every transaction open at the call is
// decided (the profile stage's transactions last one commit interval),
// then reads the committed records to there. A change read after the call
// may be in the result already; applying it again on top is harmless, as a
// change says where the list stands for its record.
//
// It holds the identifiers of every profile in one of the audiences, and
// the result: about 100 bytes per member.
func Members(ctx context.Context, kopts []kgo.Opt, changelog string, lists []changes.List) (map[changes.List][]ident.Hash, error) {
	cl, err := changelogReader(kopts)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := readableEnds(ctx, adm, changelog)
	if err != nil {
		return nil, err
	}
	starts, err := adm.ListStartOffsets(ctx, changelog)
	if err != nil {
		return nil, fmt.Errorf("changelog start offsets: %w", err)
	}
	from := map[int32]int64{}
	for p := range ends {
		if st, ok := starts.Lookup(changelog, p); ok && st.Err == nil {
			from[p] = st.Offset
		}
	}
	types := map[string][]ident.Type{} // by audience
	for _, l := range lists {
		if !slices.Contains(types[l.Audience], l.Type) {
			types[l.Audience] = append(types[l.Audience], l.Type)
		}
	}
	// The last record of each profile decides (a compacted topic): its
	// identifiers and the wanted audiences it is in.
	type member struct {
		ids []byte
		in  []string
	}
	byProfile := map[string]member{}
	var in []string
	err = readTo(ctx, cl, changelog, from, ends, func(r *kgo.Record) {
		if !isProfileKey(r.Key) {
			return
		}
		ids, legacy, ok := memberships(r.Value, types, &in)
		if !ok || len(in) == 0 {
			delete(byProfile, string(r.Key))
			return
		}
		if legacy {
			ids = withoutIDFA(ids) // hashed in lower case: matches nobody
		} else {
			ids = bytes.Clone(ids)
		}
		byProfile[string(r.Key)] = member{ids: ids, in: slices.Clone(in)}
	})
	if err != nil {
		return nil, err
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
		slices.SortFunc(hs, func(a, b ident.Hash) int { return strings.Compare(string(a[:]), string(b[:])) })
		out[l] = slices.Compact(hs)
	}
	return out, nil
}

// readableEnds returns, for each partition of the changelog, the offset up
// to which every record is decided, having waited until it reaches the
// partition's end at the call.
func readableEnds(ctx context.Context, adm *kadm.Client, changelog string) (map[int32]int64, error) {
	hw, err := adm.ListEndOffsets(ctx, changelog)
	if err != nil {
		return nil, fmt.Errorf("changelog end offsets: %w", err)
	}
	if err := hw.Error(); err != nil {
		return nil, fmt.Errorf("changelog end offsets: %w", err)
	}
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		lso, err := adm.ListCommittedOffsets(ctx, changelog)
		if err == nil {
			err = lso.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("changelog committed offsets: %w", err)
		}
		out := map[int32]int64{}
		ready := true
		hw.Each(func(o kadm.ListedOffset) {
			l, _ := lso.Lookup(changelog, o.Partition)
			if l.Offset < o.Offset {
				ready = false
			}
			out[o.Partition] = l.Offset
		})
		if ready {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("changelog: waiting for open transactions: %w", ctx.Err())
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
