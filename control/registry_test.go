package control_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/schemas/ident"
)

func openTopic(t *testing.T, kopts []kgo.Opt) *control.Topic {
	t.Helper()
	ct, err := control.Open(t.Context(), control.Config{Kafka: kopts, Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ct.Close)
	return ct
}

var vipEmail = control.ListKey{AdAccount: "549755885175", Audience: "vip", Type: ident.Email}

// TestUpdatesOfTwoReplicasAreNeverLost: two replicas change one entry at
// once, one moving its generation, the other adding retired lists; every
// change of both is in the entry afterwards, on both.
func TestUpdatesOfTwoReplicasAreNeverLost(t *testing.T) {
	kopts := cluster(t)
	a, b := openTopic(t, kopts).Registry(), openTopic(t, kopts).Registry()
	ctx := t.Context()
	if err := a.Record(ctx, vipEmail, control.ListEntry{CustomerListID: "1", Name: "pinsync vip EMAIL"}); err != nil {
		t.Fatal(err)
	}
	const n = 15
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range n {
			_, err := a.Update(ctx, vipEmail, func(cur control.ListEntry, _ bool) (control.ListEntry, error) {
				cur.Generation++
				return cur, nil
			})
			errs <- err
		}
	}()
	go func() {
		defer wg.Done()
		for i := range n {
			_, err := b.Update(ctx, vipEmail, func(cur control.ListEntry, _ bool) (control.ListEntry, error) {
				cur.Retired = append(slices.Clone(cur.Retired), fmt.Sprint(100+i))
				return cur, nil
			})
			errs <- err
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, r := range map[string]*control.Registry{"a": a, "b": b} {
		e, ok, err := r.Lookup(ctx, vipEmail)
		if err == nil {
			_, err = r.Update(ctx, vipEmail, func(cur control.ListEntry, _ bool) (control.ListEntry, error) { return cur, nil })
			e = r.Entries()[vipEmail]
		}
		if err != nil || !ok || e.Generation != n || len(e.Retired) != n || e.CustomerListID != "1" {
			t.Errorf("replica %s: %+v, %v, %v; want generation %d and %d retired lists", name, e, ok, err, n, n)
		}
	}
}

// TestAWriteFromAReplacedEntryIsMadeAgain: a replica reads the entry,
// another replaces it, then the first writes: its write is not applied
// over the newer entry; it reads again and writes its change on top.
func TestAWriteFromAReplacedEntryIsMadeAgain(t *testing.T) {
	kopts := cluster(t)
	a, b := openTopic(t, kopts).Registry(), openTopic(t, kopts).Registry()
	ctx := t.Context()
	if err := a.Record(ctx, vipEmail, control.ListEntry{CustomerListID: "1", Name: "pinsync vip EMAIL"}); err != nil {
		t.Fatal(err)
	}
	read, proceed := make(chan struct{}), make(chan struct{})
	calls := 0
	done := make(chan error, 1)
	go func() {
		_, err := a.Update(ctx, vipEmail, func(cur control.ListEntry, _ bool) (control.ListEntry, error) {
			calls++
			if calls == 1 {
				close(read)
				<-proceed // b replaces the entry meanwhile
			}
			cur.Generation++
			return cur, nil
		})
		done <- err
	}()
	<-read
	if _, err := b.Update(ctx, vipEmail, func(cur control.ListEntry, _ bool) (control.ListEntry, error) {
		cur.Retired = []string{"100"}
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	close(proceed)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e := a.Entries()[vipEmail]; e.Generation != 1 || !slices.Equal(e.Retired, []string{"100"}) || calls != 2 {
		t.Fatalf("entry %+v after %d calls; want generation 1, retired [100], the change made again once", e, calls)
	}
}

// TestAGenerationNeverGoesBack: a write of an older generation than the
// entry's (a member paused while the list was rebuilt elsewhere) is refused,
// and the entry keeps its newer generation and ids.
func TestAGenerationNeverGoesBack(t *testing.T) {
	kopts := cluster(t)
	r := openTopic(t, kopts).Registry()
	ctx := t.Context()
	newer := control.ListEntry{CustomerListID: "2", Name: "pinsync vip EMAIL #1", Generation: 1, Retired: []string{"1"}}
	if err := r.Record(ctx, vipEmail, newer); err != nil {
		t.Fatal(err)
	}
	err := r.Record(ctx, vipEmail, control.ListEntry{CustomerListID: "1", Name: "pinsync vip EMAIL"})
	if !errors.Is(err, control.ErrStaleGeneration) {
		t.Fatalf("a write of generation 0 over 1: %v, want ErrStaleGeneration", err)
	}
	if e := r.Entries()[vipEmail]; e.CustomerListID != "2" || e.Generation != 1 {
		t.Fatalf("entry %+v, want the generation-1 list", e)
	}
	// A second replica sees the same.
	if e, _, _ := openTopic(t, kopts).Registry().Lookup(ctx, vipEmail); e.CustomerListID != "2" || e.Generation != 1 {
		t.Fatalf("another replica reads %+v", e)
	}
}

// TestARebuildMarkSurvivesAConcurrentResolution: pinsync resync marks a
// list while its owner records the list's ids: the ids and the mark are
// both in the entry, whichever comes first.
func TestARebuildMarkSurvivesAConcurrentResolution(t *testing.T) {
	kopts := cluster(t)
	owner, resync := openTopic(t, kopts).Registry(), openTopic(t, kopts).Registry()
	ctx := t.Context()
	if err := owner.Record(ctx, vipEmail, control.ListEntry{CustomerListID: "1", Name: "pinsync vip EMAIL"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	var markErr, recErr error
	go func() {
		defer wg.Done()
		_, markErr = resync.RequestRebuild(ctx, "vip", ident.Email)
	}()
	go func() {
		defer wg.Done()
		_, recErr = owner.Update(ctx, vipEmail, func(cur control.ListEntry, _ bool) (control.ListEntry, error) {
			cur.AudienceID = "9"
			return cur, nil
		})
	}()
	wg.Wait()
	if markErr != nil || recErr != nil {
		t.Fatal(markErr, recErr)
	}
	if e, _, err := owner.Current(context.Background(), vipEmail); err != nil || e.Rebuild != control.RebuildRequested || e.AudienceID != "9" {
		t.Fatalf("entry %+v, %v; want the mark and the audience", e, err)
	}
}

// TestUpdateStopsWhenChangeRefuses: an error from change (an ownership
// check that fails) writes nothing.
func TestUpdateStopsWhenChangeRefuses(t *testing.T) {
	kopts := cluster(t)
	r := openTopic(t, kopts).Registry()
	ctx := t.Context()
	notOwner := errors.New("not the owner")
	if _, err := r.Update(ctx, vipEmail, func(control.ListEntry, bool) (control.ListEntry, error) {
		return control.ListEntry{CustomerListID: "1"}, notOwner
	}); !errors.Is(err, notOwner) {
		t.Fatalf("Update: %v", err)
	}
	if _, ok, _ := r.Lookup(ctx, vipEmail); ok {
		t.Fatal("a refused update was written")
	}
}
