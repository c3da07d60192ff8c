package profiles

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// TestMembersReadsEveryListOfABatchFromTheLastRecords: one read of a
// two-partition changelog answers for three lists. A profile's last record
// decides (a later record leaving the audience, or a tombstone, takes it
// out); a profile in two audiences counts in both, with each list's type
// only; a record of a version that keyed profiles by id counts; records of
// an aborted transaction, and the changelog's other keys, do not.
func TestMembersReadsEveryListOfABatchFromTheLastRecords(t *testing.T) {
	const changelog = "g.changelog"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, changelog))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	auds, _ := newAudiences(nil, nil, "1", nil, false)
	cd := codec{auds}
	vip, churn := auds.intern("vip", "", "").id, auds.intern("churn", "", "").id
	email := func(n uint64) schemas.Identifier { return schemas.Identifier{Type: ident.Email, Hash: benchHash(n, 1)} }
	idfa := func(n uint64) schemas.Identifier { return schemas.Identifier{Type: ident.IDFA, Hash: benchHash(n, 2)} }
	rec := func(p int32, key string, pr *profile) *kgo.Record {
		r := &kgo.Record{Topic: changelog, Partition: p, Key: []byte(key)}
		if pr != nil {
			r.Value = cd.encode(pr)
		}
		return r
	}
	digest := func(id string) string { return changelogKey("events", newProfiles(5, nil).keyOf(id)) }
	plain := []*kgo.Record{
		// in vip, then out of it: not a member
		rec(0, digest("a"), &profile{ids: []schemas.Identifier{email(1)}, auds: []uint32{vip}}),
		rec(0, digest("a"), &profile{ids: []schemas.Identifier{email(1)}, auds: []uint32{vip | outBit}}),
		// in vip and churn, email and IDFA
		rec(0, digest("b"), &profile{ids: []schemas.Identifier{email(2), idfa(2)}, auds: []uint32{vip, churn}}),
		// in churn, then deleted
		rec(1, digest("c"), &profile{ids: []schemas.Identifier{email(3)}, auds: []uint32{churn}}),
		rec(1, digest("c"), nil),
		// a record keyed by plain id, in vip
		rec(1, legacyPrefix("events")+"d@example.com", &profile{ids: []schemas.Identifier{email(4)}, auds: []uint32{vip}}),
		// not a profile
		{Topic: changelog, Partition: 1, Key: []byte(positionKey("events")), Value: positionValue(9, 0)},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, plain...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// An aborted transaction puts a profile in churn: not counted.
	tx, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.TransactionalID("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	if err := tx.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := tx.ProduceSync(ctx, rec(0, digest("e"), &profile{ids: []schemas.Identifier{email(5)}, auds: []uint32{churn}})).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := tx.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}

	lists := []changes.List{{Type: ident.Email, Audience: "vip"}, {Type: ident.Email, Audience: "churn"}, {Type: ident.IDFA, Audience: "churn"}}
	got, err := Members(ctx, []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, changelog, lists)
	if err != nil {
		t.Fatal(err)
	}
	sorted := func(hs ...ident.Hash) []ident.Hash {
		slices.SortFunc(hs, func(a, b ident.Hash) int { return slices.Compare(a[:], b[:]) })
		return hs
	}
	want := map[changes.List][]ident.Hash{
		lists[0]: sorted(email(2).Hash, email(4).Hash),
		lists[1]: {email(2).Hash},
		lists[2]: {idfa(2).Hash},
	}
	for _, l := range lists {
		if !slices.Equal(got[l], want[l]) {
			t.Errorf("%v: %d members %x, want %d %x", l, len(got[l]), got[l], len(want[l]), want[l])
		}
	}
}

// TestAReadHoldsNoMoreThanItsBound: a reader bounded below what one
// partition's members cost refuses the whole partition and reads it in
// key ranges, each within the bound; together they hold exactly the
// members a reader without that bound finds.
func TestAReadHoldsNoMoreThanItsBound(t *testing.T) {
	const changelog = "g.changelog"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, changelog))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	auds, _ := newAudiences(nil, nil, "1", nil, false)
	cd := codec{auds}
	vip := auds.intern("vip", "", "").id
	keys := newProfiles(5, nil)
	var recs []*kgo.Record
	for i := range 400 {
		pr := &profile{ids: []schemas.Identifier{{Type: ident.Email, Hash: benchHash(uint64(i), 1)}}, auds: []uint32{vip}}
		if i%5 == 0 {
			pr.auds = []uint32{vip | outBit} // not a member
		}
		recs = append(recs, &kgo.Record{Topic: changelog, Key: []byte(changelogKey("events", keys.keyOf(fmt.Sprint("p", i)))), Value: cd.encode(pr)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kopts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	cl, err := kgo.NewClient(append(kopts, kgo.DefaultProduceTopic(changelog))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	vipEmail := changes.List{Type: ident.Email, Audience: "vip"}
	lists := []changes.List{vipEmail}
	whole, err := OpenMemberReader(ctx, kopts, changelog, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	all, fits, err := whole.Read(ctx, 0, 0, 1, lists)
	if err != nil || !fits || len(all[vipEmail]) != 320 {
		t.Fatalf("unbounded read: %d members, fits %v, %v; want 320", len(all[vipEmail]), fits, err)
	}

	const bound = 20 << 10 // about a third of the partition's members
	r, err := OpenMemberReader(ctx, kopts, changelog, bound)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got []ident.Hash
	parts := 1
	for part := 0; part < parts; {
		m, fits, err := r.Read(ctx, 0, part, parts, lists)
		if err != nil {
			t.Fatal(err)
		}
		if !fits {
			parts, part, got = 2*parts, 0, nil
			continue
		}
		if held := int64(len(m[vipEmail])) * (heldMember{key: strings.Repeat("k", len(recs[0].Key)), ids: make([]byte, 33), in: []string{"vip"}}).bytes(); held > bound {
			t.Errorf("range %d of %d holds %d members, %d bytes: over the bound", part, parts, len(m[vipEmail]), held)
		}
		got = append(got, m[vipEmail]...)
		part++
	}
	if parts < 2 {
		t.Errorf("read in %d key range, want several", parts)
	}
	slices.SortFunc(got, func(a, b ident.Hash) int { return slices.Compare(a[:], b[:]) })
	if !slices.Equal(got, all[vipEmail]) {
		t.Errorf("key ranges found %d members, want the %d of one read", len(got), len(all[vipEmail]))
	}
}

// TestMembersRefuseARecordOfANewerVersion: a profile record of a format
// version this pinsync does not read is neither skipped nor taken for a
// tombstone: the read fails, naming it.
func TestMembersRefuseARecordOfANewerVersion(t *testing.T) {
	const changelog = "g.changelog"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, changelog))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	auds, _ := newAudiences(nil, nil, "1", nil, false)
	vip := auds.intern("vip", "", "").id
	key := changelogKey("events", newProfiles(5, nil).keyOf("a"))
	good := codec{auds}.encode(&profile{ids: []schemas.Identifier{{Type: ident.Email, Hash: benchHash(1, 1)}}, auds: []uint32{vip}})
	newer := append([]byte{stateVersion + 1}, good[1:]...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: changelog, Key: []byte(key), Value: good},
		&kgo.Record{Topic: changelog, Key: []byte(key), Value: newer}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got, err := Members(ctx, []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, changelog, []changes.List{{Type: ident.Email, Audience: "vip"}})
	if !errors.Is(err, ErrUnknownVersion) || !strings.Contains(err.Error(), "record 1 of g.changelog/0") {
		t.Fatalf("Members: %v, %v; want an error naming record 1 and its newer version", got, err)
	}
}
