package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// naiveBatch is the number of records per request of the naive sync.
const naiveBatch = 1000

// naive is the sync a team would write by hand: a group consumer with
// autocommit, encoding/json into a map, trim/lowercase/SHA-256 of each
// identifier, and a PATCH of 1,000 records to one list per audience and
// type (created up front). No state, no windows, no exact commits: an exit
// removes the identifiers it carries, nothing more.
func (en *env) naive(ctx context.Context, recs []stream.Record, scfg stream.Config) (time.Duration, error) {
	_, srv, err := sandboxServer(sandbox.Unlimited)
	if err != nil {
		return 0, err
	}
	defer srv.Close()
	pin, err := en.client("naive", srv.URL, -1, prometheus.NewRegistry())
	if err != nil {
		return 0, err
	}
	g, err := stream.New(scfg)
	if err != nil {
		return 0, err
	}
	type listKey struct {
		aud string
		typ ident.Type
	}
	listIDs := map[listKey]string{}
	for _, a := range g.Audiences() {
		for _, t := range ident.Types {
			// Pinterest wants a first record; a placeholder hash does.
			seed := ident.Hash(sha256.Sum256([]byte("naive placeholder " + a + t.String())))
			l, err := pin.CreateCustomerList(ctx, sandbox.DefaultAdAccountID, "naive "+a+" "+t.String(), t, []ident.Hash{seed})
			if err != nil {
				return 0, err
			}
			listIDs[listKey{a, t}] = l.ID
		}
	}
	type batchKey struct {
		list listKey
		op   pinterest.Operation
	}
	batches := map[batchKey][]ident.Hash{}
	send := func(k batchKey) error {
		id, ok := listIDs[k.list]
		if !ok || len(batches[k]) == 0 {
			return nil
		}
		err := pin.UpdateCustomerList(ctx, sandbox.DefaultAdAccountID, id, k.op, batches[k])
		batches[k] = batches[k][:0]
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(en.brokers...), kgo.ConsumerGroup("naive"), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	start := time.Now()
	got := 0
	for got < len(recs) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		var ferr error
		fs.EachRecord(func(r *kgo.Record) {
			got++
			aud, member, ids := naiveParse(r.Value)
			if aud == "" {
				return
			}
			op := pinterest.Add
			if !member {
				op = pinterest.Remove
			}
			for _, id := range ids {
				k := batchKey{listKey{aud, id.typ}, op}
				batches[k] = append(batches[k], id.hash)
				if len(batches[k]) >= naiveBatch {
					if err := send(k); err != nil && ferr == nil {
						ferr = err
					}
				}
			}
		})
		if ferr != nil {
			return 0, ferr
		}
	}
	for k := range batches {
		if err := send(k); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

type naiveID struct {
	typ  ident.Type
	hash ident.Hash
}

// naiveParse reads an Engage record the way a hand-written consumer would.
func naiveParse(v []byte) (aud string, member bool, ids []naiveID) {
	var m map[string]any
	if json.Unmarshal(v, &m) != nil {
		return "", false, nil
	}
	ctxm, _ := m["context"].(map[string]any)
	personas, _ := ctxm["personas"].(map[string]any)
	aud, _ = personas["computation_key"].(string)
	traits, _ := m["traits"].(map[string]any)
	if m["type"] == "track" {
		props, _ := m["properties"].(map[string]any)
		member, _ = props[aud].(bool)
		traits, _ = ctxm["traits"].(map[string]any)
	} else {
		member, _ = traits[aud].(bool)
	}
	add := func(t ident.Type, s any) {
		str, ok := s.(string)
		if !ok || str == "" {
			return
		}
		sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(str))))
		// A hand-written sync hex-encodes for the request body.
		_ = hex.EncodeToString(sum[:])
		ids = append(ids, naiveID{t, sum})
	}
	add(ident.Email, traits["email"])
	add(ident.IDFA, traits["ios_idfa"])
	add(ident.MAID, traits["android_idfa"])
	if dev, ok := ctxm["device"].(map[string]any); ok {
		if dev["type"] == "ios" {
			add(ident.IDFA, dev["advertisingId"])
		} else {
			add(ident.MAID, dev["advertisingId"])
		}
	}
	return aud, member, ids
}
