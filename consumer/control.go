package consumer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// Replicas agree on who creates each Pinterest list through the control
// topic (package control): a replica that needs a list nobody has made
// appends a claim with key "list/<ad account>/<list name>"; the first claim
// in the log wins. The winner creates the list (with its first batch) and
// its audience, then appends the ids under the same key; the others wait
// for them. A claim not fulfilled within Config.ClaimTimeout may be taken
// over by a later claim (its replica died mid-creation; the new winner
// finds what it had made by name).

// claimValue is the value of a list record: a claim while ListID is empty,
// the result once both ids are set.
type claimValue struct {
	Owner      string `json:"owner"`
	ListID     string `json:"list_id,omitempty"`
	AudienceID string `json:"audience_id,omitempty"`
}

// listClaim is the state of one list key after the records read so far.
type listClaim struct {
	owner              string
	at                 time.Time // claim time (the claimant's clock)
	listID, audienceID string    // set once created
}

func (c *listClaim) done() bool { return c != nil && c.listID != "" && c.audienceID != "" }

// claims is the engine's view of the list records of the control topic.
type claims struct {
	log     *control.Log
	owner   string
	timeout time.Duration
	slog    *slog.Logger

	mu sync.Mutex
	m  map[string]*listClaim
}

// openClaims opens the control topic and starts reading it.
func openClaims(ctx context.Context, kopts []kgo.Opt, topic string, timeout time.Duration, log *slog.Logger) (*claims, error) {
	var id [8]byte
	_, _ = rand.Read(id[:])
	c := &claims{owner: hex.EncodeToString(id[:]), timeout: timeout, slog: log, m: make(map[string]*listClaim)}
	l, err := control.Open(ctx, control.Config{Kafka: kopts, Topic: topic, Apply: c.apply, Logger: log})
	if err != nil {
		return nil, err
	}
	c.log = l
	return c, nil
}

func (c *claims) close() { c.log.Close() }

func listClaimKey(adAccount, name string) string { return "list/" + adAccount + "/" + name }

// apply folds one control record into the claims; other keys are not ours.
func (c *claims) apply(r control.Record) {
	if len(r.Key) < 5 || r.Key[:5] != "list/" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Value == nil {
		delete(c.m, r.Key)
		return
	}
	var v claimValue
	if err := json.Unmarshal(r.Value, &v); err != nil {
		c.slog.Warn("skipping malformed control record", "key", r.Key, "offset", r.Offset)
		return
	}
	cur := c.m[r.Key]
	switch {
	case v.ListID != "" && v.AudienceID != "":
		c.m[r.Key] = &listClaim{owner: v.Owner, at: r.Time, listID: v.ListID, audienceID: v.AudienceID}
	case cur.done():
	case cur == nil || !r.Time.Before(cur.at.Add(c.timeout)):
		c.m[r.Key] = &listClaim{owner: v.Owner, at: r.Time}
	}
}

func (c *claims) get(key string) listClaim {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v := c.m[key]; v != nil {
		return *v
	}
	return listClaim{}
}

// live reports whether cl is a claim of another replica still in force.
func (c *claims) live(cl listClaim, now time.Time) bool {
	return cl.owner != "" && cl.owner != c.owner && !cl.done() && now.Before(cl.at.Add(c.timeout))
}

// claim appends a claim for key and reports, once it has been read back,
// whether this replica holds the key.
func (c *claims) claim(ctx context.Context, key string) (bool, error) {
	b, _ := json.Marshal(claimValue{Owner: c.owner})
	off, err := c.log.Append(ctx, key, b)
	if err != nil {
		return false, err
	}
	if err := c.log.WaitApplied(ctx, off); err != nil {
		return false, err
	}
	cl := c.get(key)
	return !cl.done() && cl.owner == c.owner, nil
}

// fulfil appends the ids of a list this replica created.
func (c *claims) fulfil(ctx context.Context, key, listID, audienceID string) error {
	b, _ := json.Marshal(claimValue{Owner: c.owner, ListID: listID, AudienceID: audienceID})
	off, err := c.log.Append(ctx, key, b)
	if err != nil {
		return err
	}
	return c.log.WaitApplied(ctx, off)
}

// wait waits until key is fulfilled or no longer claimed by a live replica.
func (c *claims) wait(ctx context.Context, key string) error {
	return c.log.WaitFor(ctx, 250*time.Millisecond, func() bool {
		cl := c.get(key)
		return cl.done() || !c.live(cl, time.Now())
	})
}

// ensureClaimed is lists.ensure across replicas: it resolves the list and
// audience of window k through the control topic, creating them only when
// this replica's claim is the first in the log.
func (l *lists) ensureClaimed(ctx context.Context, a *audience, k windowKey, li *listInfo, name string, adds []ident.Hash) (string, bool, error) {
	c := l.claims
	key := listClaimKey(a.adAccount, name)
	for {
		if err := ctx.Err(); err != nil {
			return "", false, context.Cause(ctx)
		}
		if cl := c.get(key); cl.done() {
			l.mu.Lock()
			li.name, li.listID, li.audienceID = name, cl.listID, cl.audienceID
			l.mu.Unlock()
			return cl.listID, false, nil
		}
		// A list found by name can be used directly once its audience
		// exists too; otherwise its creator is still at work or died.
		id, aud, err := l.find(ctx, a, name)
		if err != nil {
			return "", false, err
		}
		if id != "" && aud != nil {
			l.mu.Lock()
			li.name, li.listID = name, id
			l.mu.Unlock()
			l.setAudience(li, *aud)
			return id, false, nil
		}
		if id == "" && len(adds) == 0 {
			return "", false, nil // nothing to add to a list nobody made
		}
		if c.live(c.get(key), time.Now()) {
			if err := c.wait(ctx, key); err != nil {
				return "", false, err
			}
			continue
		}
		won, err := c.claim(ctx, key)
		if err != nil {
			return "", false, fmt.Errorf("claiming list %q: %w", name, err)
		}
		if !won {
			continue
		}
		return l.create(ctx, a, k, li, key, name, id, adds)
	}
}

// find looks the list up by name and, when found, its audience.
func (l *lists) find(ctx context.Context, a *audience, name string) (string, *pinterest.Audience, error) {
	cl, found, err := l.pin.FindCustomerList(ctx, a.adAccount, name)
	if err != nil || !found {
		return "", nil, err
	}
	auds, err := l.pin.Audiences(ctx, a.adAccount)
	if err != nil {
		return "", nil, err
	}
	for i := range auds {
		if auds[i].Rule.CustomerListID == cl.ID {
			return cl.ID, &auds[i], nil
		}
	}
	return cl.ID, nil, nil
}

// create makes the list (unless id names it already) with adds and its
// audience, as the holder of the claim key, and publishes the ids.
func (l *lists) create(ctx context.Context, a *audience, k windowKey, li *listInfo, key, name, id string, adds []ident.Hash) (string, bool, error) {
	id, created, err := l.make(ctx, a, k, li, name, id, adds)
	if err != nil {
		return id, created, err
	}
	l.mu.Lock()
	aud := li.audienceID
	l.mu.Unlock()
	if err := l.claims.fulfil(ctx, key, id, aud); err != nil {
		// The list and audience exist; other replicas find them by name.
		l.claims.slog.Warn("publishing created list ids failed", "list", name, "err", err)
	}
	return id, created, nil
}
