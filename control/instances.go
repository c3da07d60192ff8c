package control

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"time"
)

// Instance is a running pinsync process as it announces itself in the
// control topic: where its HTTP server (/status, the status pages) is
// reached. `pinsync status` and every replica's group page find the
// deployment's processes this way: a list's owner is found through the
// list stage's group, its figures on the owner's /status, and the group
// does not say where a member's HTTP server listens.
type Instance struct {
	// Name identifies the process: its Kafka instance id (static
	// membership), or else its advertised address.
	Name string `json:"-"`
	// URL is the base URL of its HTTP server, e.g. http://10.0.0.7:8080.
	URL string `json:"url"`
	// Started is when the process started; Seen when it last announced
	// itself. Both are the announcer's clock.
	Started time.Time `json:"started"`
	Seen    time.Time `json:"seen"`
}

// A running process announces itself every AnnounceInterval; one not
// seen for InstanceExpiry is taken to have died without withdrawing (kill
// -9, a lost node), and a reader leaves it out.
const (
	AnnounceInterval = time.Minute
	InstanceExpiry   = 3 * AnnounceInterval
)

// Live reports whether in announced itself within InstanceExpiry before
// now.
func (in Instance) Live(now time.Time) bool { return now.Sub(in.Seen) < InstanceExpiry }

// instancePrefix starts the key of every instance record: "instance/<name>".
const instancePrefix = "instance/"

// applyInstance folds an instance record into the topic's state; it
// reports whether r was one. Called with t.mu held.
func (t *Topic) applyInstance(r Record) bool {
	name, ok := strings.CutPrefix(r.Key, instancePrefix)
	if !ok {
		return false
	}
	if r.Value == nil {
		delete(t.instances, name)
		return true
	}
	var in Instance
	if err := json.Unmarshal(r.Value, &in); err != nil || in.URL == "" {
		t.logger.Warn("skipping a malformed instance record", "offset", r.Offset)
		return true
	}
	in.Name = name
	t.instances[name] = in
	return true
}

// Announce records in (again, with in.Seen as given), so that readers
// find the process. It returns once the broker has the record.
func (t *Topic) Announce(ctx context.Context, in Instance) error {
	if in.Name == "" || in.URL == "" {
		return errors.New("control: an instance needs a name and a URL")
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	_, err = t.log.Append(ctx, instancePrefix+in.Name, b)
	return err
}

// Withdraw removes the instance record of name (a tombstone): the process
// is stopping.
func (t *Topic) Withdraw(ctx context.Context, name string) error {
	_, err := t.log.Append(ctx, instancePrefix+name, nil)
	return err
}

// Instances returns every instance recorded, live or not, by name, having
// read every record written before the call.
func (t *Topic) Instances(ctx context.Context) ([]Instance, error) {
	if err := t.log.CatchUp(ctx); err != nil {
		return nil, err
	}
	t.mu.Lock()
	out := make([]Instance, 0, len(t.instances))
	for _, in := range t.instances {
		out = append(out, in)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ForgetInstances withdraws every instance not seen since before, so that
// the records of processes that died without withdrawing (a dynamic
// member's name is its address, new at each start) do not pile up. It
// returns how many it withdrew.
func (t *Topic) ForgetInstances(ctx context.Context, before time.Time) (int, error) {
	all, err := t.Instances(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, in := range all {
		if !in.Seen.Before(before) {
			continue
		}
		if err := t.Withdraw(ctx, in.Name); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// CatchUp waits until every record written before the call has been
// applied: the registry's Entries then include every entry written
// before.
func (t *Topic) CatchUp(ctx context.Context) error { return t.log.CatchUp(ctx) }
