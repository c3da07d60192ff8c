package control_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
)

const topic = "pinsync.control"

func cluster(t *testing.T) []kgo.Opt {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
}

func newStore(t *testing.T, kopts []kgo.Opt, key []byte) *control.TokenStore {
	t.Helper()
	ct, err := control.Open(t.Context(), control.Config{Kafka: kopts, Topic: topic, RefreshTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ct.Close)
	s, err := ct.TokenStore(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func key(b byte) []byte { return bytes.Repeat([]byte{b}, control.KeySize) }

func TestTokenRotatedInOneReplicaIsLoadedByTheOther(t *testing.T) {
	kopts := cluster(t)
	a, b := newStore(t, kopts, key(1)), newStore(t, kopts, key(1))
	ctx := t.Context()
	if _, err := b.Load(ctx); !errors.Is(err, pinterest.ErrNoToken) {
		t.Fatalf("Load of an empty store = %v, want ErrNoToken", err)
	}
	for _, rt := range []string{"refresh-1", "refresh-2"} {
		if err := a.Save(ctx, &oauth2.Token{AccessToken: "access-" + rt, RefreshToken: rt}); err != nil {
			t.Fatal(err)
		}
		got, err := b.Load(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got.RefreshToken != rt || got.AccessToken != "access-"+rt {
			t.Fatalf("other replica loaded refresh token %q, want %q", got.RefreshToken, rt)
		}
	}
}

// raw returns the last "token" record of the control topic.
func raw(t *testing.T, kopts []kgo.Opt) []byte {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, kopts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var last []byte
	for last == nil {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no token record in the control topic")
		}
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Key) == "token" {
				last = r.Value
			}
		})
	}
	return last
}

func produce(t *testing.T, kopts []kgo.Opt, k string, v []byte) {
	t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt{}, kopts...), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(t.Context(), &kgo.Record{Topic: topic, Key: []byte(k), Value: v}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestTamperedTokenIsRejected(t *testing.T) {
	kopts := cluster(t)
	s := newStore(t, kopts, key(1))
	if err := s.Save(t.Context(), &oauth2.Token{RefreshToken: "secret-refresh"}); err != nil {
		t.Fatal(err)
	}
	v := raw(t, kopts)
	if bytes.Contains(v, []byte("secret-refresh")) {
		t.Fatal("the refresh token is stored in plaintext")
	}
	for _, i := range []int{0, 12, len(v) - 1} { // version, nonce, tag
		bad := bytes.Clone(v)
		bad[i] ^= 0x40
		produce(t, kopts, "token", bad)
		if _, err := s.Load(t.Context()); !errors.Is(err, control.ErrTampered) {
			t.Fatalf("Load with byte %d flipped = %v, want ErrTampered", i, err)
		}
	}
}

func TestWrongKeyIsAClearError(t *testing.T) {
	kopts := cluster(t)
	if err := newStore(t, kopts, key(1)).Save(t.Context(), &oauth2.Token{RefreshToken: "r"}); err != nil {
		t.Fatal(err)
	}
	_, err := newStore(t, kopts, key(2)).Load(t.Context())
	if !errors.Is(err, control.ErrWrongKey) {
		t.Fatalf("Load with another key = %v, want ErrWrongKey", err)
	}
}

func TestKeyFromEnv(t *testing.T) {
	good := base64.StdEncoding.EncodeToString(key(7))
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{"valid", good, true},
		{"unset", "", false},
		{"not base64", "!!!", false},
		{"short", base64.StdEncoding.EncodeToString(key(7)[:16]), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := control.KeyFromEnv(func(string) string { return tc.value }, "PINSYNC_PINTEREST_TOKEN_KEY")
			var ke *control.KeyError
			switch {
			case tc.ok && (err != nil || !bytes.Equal(k, key(7))):
				t.Fatalf("KeyFromEnv = %x, %v", k, err)
			case !tc.ok && !errors.As(err, &ke):
				t.Fatalf("KeyFromEnv = %v, want *KeyError", err)
			case !tc.ok && bytes.Contains([]byte(err.Error()), []byte(tc.value)) && tc.value != "":
				t.Fatalf("error %q quotes the value", err)
			}
		})
	}
}

func TestOneReplicaRefreshesAtATime(t *testing.T) {
	kopts := cluster(t)
	a, b := newStore(t, kopts, key(1)), newStore(t, kopts, key(1))
	ctx := t.Context()
	unlockA, err := a.LockRefresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var order []string
	done := make(chan error, 1)
	go func() {
		unlockB, err := b.LockRefresh(ctx)
		if err == nil {
			mu.Lock()
			order = append(order, "b")
			mu.Unlock()
			unlockB()
		}
		done <- err
	}()
	// b cannot hold the claim while a does: a's claim precedes b's in the log.
	if err := a.Save(ctx, &oauth2.Token{RefreshToken: "rotated-by-a"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	order = append(order, "a")
	mu.Unlock()
	unlockA()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(order) != 2 || order[0] != "a" {
		t.Fatalf("refresh order %v, want a then b", order)
	}
	tok, err := b.Load(ctx)
	if err != nil || tok.RefreshToken != "rotated-by-a" {
		t.Fatalf("b loaded %v, %v after a's refresh", tok, err)
	}
}
