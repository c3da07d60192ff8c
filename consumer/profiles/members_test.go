package profiles

import (
	"context"
	"slices"
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
