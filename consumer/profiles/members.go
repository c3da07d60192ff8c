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

	"github.com/pinsync/pinsync/schemas/ident"
)

// Members reads, from the changelog, the hashes of type typ of every
// profile that is a member of audience: what the audience's list of that
// type holds when it is exact. It is how a list is rebuilt (package lists).
//
// The state it reads stands after every transaction that wrote a change
// the list stage has read before the call: it first waits, for every
// changelog partition, until every transaction open at the call is
// decided (the profile stage's transactions last one commit interval),
// then reads the committed records to there. A change read after the call
// may be in the result already; applying it again on top is harmless, as a
// change says where the list stands for its record.
//
// It holds one entry per member of the audience, and the result: about
// 60 bytes per member.
func Members(ctx context.Context, kopts []kgo.Opt, changelog, audience string, typ ident.Type) ([]ident.Hash, error) {
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
	members := map[string][]ident.Hash{}
	err = readTo(ctx, cl, changelog, from, ends, func(r *kgo.Record) {
		if !isProfileKey(r.Key) {
			return
		}
		if hs, in := memberHashes(r.Value, audience, typ); in {
			members[string(r.Key)] = hs
		} else {
			delete(members, string(r.Key))
		}
	})
	if err != nil {
		return nil, err
	}
	var out []ident.Hash
	for _, hs := range members {
		out = append(out, hs...)
	}
	slices.SortFunc(out, func(a, b ident.Hash) int { return strings.Compare(string(a[:]), string(b[:])) })
	return slices.Compact(out), nil
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

// memberHashes decodes a profile record (see codec.encode) far enough to
// say whether it is a member of audience, and if so its hashes of type
// typ. A tombstone or a malformed record is no member.
func memberHashes(b []byte, audience string, typ ident.Type) ([]ident.Hash, bool) {
	if len(b) < 1 || b[0] != stateVersion {
		return nil, false
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n > 1000 || len(b[k:]) < int(n)*33 {
		return nil, false
	}
	ids := b[k : k+int(n)*33]
	b = b[k+int(n)*33:]
	na, k := binary.Uvarint(b)
	if k <= 0 {
		return nil, false
	}
	b = b[k:]
	in := false
	for i := uint64(0); i < na; i++ {
		if len(b) < 2 {
			return nil, false
		}
		flag := b[0]
		l, k := binary.Uvarint(b[1:])
		if k <= 0 || uint64(len(b[1+k:])) < l {
			return nil, false
		}
		if string(b[1+k:1+k+int(l)]) == audience {
			in = flag == 1
		}
		b = b[1+k+int(l):]
	}
	if !in {
		return nil, false
	}
	var hs []ident.Hash
	for ; len(ids) >= 33; ids = ids[33:] {
		if ident.Type(ids[0]) == typ {
			var h ident.Hash
			copy(h[:], ids[1:33])
			hs = append(hs, h)
		}
	}
	return hs, true
}
