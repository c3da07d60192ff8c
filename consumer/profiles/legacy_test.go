package profiles

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// TestRestoreMovesPlainIDKeysToDigests: a changelog written by a version
// that keyed profiles by their plain id restores each profile under its
// digest, lists it as changed (so the next transaction writes it under
// its new key) and names the old keys, which that transaction deletes.
func TestRestoreMovesPlainIDKeysToDigests(t *testing.T) {
	const changelog = "g.changelog"
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, changelog))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	auds, _ := newAudiences(nil, nil, "1", nil, false)
	cd := codec{auds}
	p := &profile{ids: []schemas.Identifier{{Type: ident.Email, Hash: benchHash(1, 1)}}, auds: []uint32{auds.intern("vip", "", "").id}}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(changelog))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	oldKeys := []string{legacyPrefix("events") + "ann@example.com", legacyPrefix("events") + "bob@example.com"}
	for _, k := range oldKeys {
		if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(k), Value: cd.encode(p)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	state := newProfiles(5, nil)
	state.track = true
	res, err := restore(ctx, []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, changelog, partKey{"events", 0}, state, cd, func(off int64) {
		t.Errorf("record %d skipped", off)
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.profiles != 2 || len(res.legacy) != 2 || res.legacy[0] != oldKeys[0] || res.legacy[1] != oldKeys[1] {
		t.Fatalf("restored %d profiles, old keys %q; want 2 and %q", res.profiles, res.legacy, oldKeys)
	}
	for _, id := range []string{"ann@example.com", "bob@example.com"} {
		if _, ok := state.get(state.keyOf(id)); !ok {
			t.Errorf("profile %s is not held under its digest", id)
		}
		if _, ok := state.get(id); ok {
			t.Errorf("profile %s is held under its plain id", id)
		}
	}
	var dirty []string
	state.takeDirty(func(key string, p *profile) {
		if p == nil {
			t.Errorf("profile %x listed as removed", key)
		}
		dirty = append(dirty, key)
	})
	if len(dirty) != 2 || dirty[0] != state.keyOf("ann@example.com") || dirty[1] != state.keyOf("bob@example.com") {
		t.Errorf("changed after the restore: %x; want both profiles' digests", dirty)
	}
}
