package lists

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/consumer/commit"
	"github.com/pinsync/pinsync/consumer/lists/sink"
	"github.com/pinsync/pinsync/consumer/lists/window"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/ident"
)

// interval is the flush interval of the scheduling tests.
const interval = 10 * time.Second

// record is a distinct, hash-like record for each n.
func record(n int) ident.Hash {
	return sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// ops returns changes with op o to records first..first+n-1.
func ops(o changes.Op, first, n int) []changes.Change {
	cs := make([]changes.Change, n)
	for i := range cs {
		cs[i] = changes.Change{Hash: record(first + i), Op: o}
	}
	return cs
}

// feed puts changes into windows and applies their pending counts to a
// tracker at once, as a worker does.
type feed struct {
	ws *window.Set
	tr *commit.Tracker
}

// add puts cs into list l's window, in epoch pk.
func (f feed) add(l uint32, cs []changes.Change, pk commit.Key, now time.Time) {
	var d commit.Deltas
	f.ws.Add(window.ListID(l), cs, pk, now, &d)
	f.tr.Apply(&d)
}

// open is the open epoch of pt.
func (f feed) open(pt *commit.Partition) commit.Key { return f.tr.Open(pt) }

// pinFunc is a Pinterest whose list writes go to a function; the lists of
// audiences "aud", "aud0" … "aud99" exist already, and audiences are made
// on request.
type pinFunc func(ctx context.Context, op pinterest.Operation, records []ident.Hash) error

func (f pinFunc) CheckWriteAccess(context.Context, string) error { return nil }
func (f pinFunc) CustomerLists(context.Context, string) ([]pinterest.CustomerList, error) {
	out := []pinterest.CustomerList{{ID: "list-aud", Name: "pinsync aud EMAIL"}}
	for a := range 100 {
		name := fmt.Sprintf("pinsync aud%d EMAIL", a)
		out = append(out, pinterest.CustomerList{ID: "list-" + name, Name: name})
	}
	return out, nil
}
func (f pinFunc) CreateCustomerList(context.Context, string, string, ident.Type, []ident.Hash) (pinterest.CustomerList, error) {
	return pinterest.CustomerList{}, errors.New("unexpected create")
}
func (f pinFunc) UpdateCustomerList(ctx context.Context, _, _ string, op pinterest.Operation, records []ident.Hash) error {
	return f(ctx, op, records)
}
func (f pinFunc) Audiences(context.Context, string) ([]pinterest.Audience, error) {
	return nil, nil
}
func (f pinFunc) CreateAudience(_ context.Context, _, name, listID string) (pinterest.Audience, error) {
	return pinterest.Audience{ID: "aud-" + name, Rule: pinterest.AudienceRule{CustomerListID: listID}}, nil
}
func (f pinFunc) RepointAudience(_ context.Context, _, audienceID, listID string) (pinterest.Audience, error) {
	return pinterest.Audience{ID: audienceID, Rule: pinterest.AudienceRule{CustomerListID: listID}}, nil
}
func (f pinFunc) Audience(context.Context, string, string) (pinterest.Audience, error) {
	return pinterest.Audience{}, errors.New("unexpected read")
}

// call is one list write the fake Pinterest saw.
type call struct {
	at      time.Time
	op      pinterest.Operation
	records int
}

// sched is a dispatcher (no Kafka, no stage) whose uploads go through a
// sink to a fake Pinterest.
type sched struct {
	*dispatcher
	sink *sink.Sink
}

// newSched builds a dispatcher whose uploads go to pin, with one tracked
// partition and one list; it returns the dispatcher, a feed of its
// windows, the partition and the list.
func newSched(t interface {
	Helper()
	Fatal(...any)
}, ctx context.Context, maxRecords int, pin Pinterest) (*sched, feed, *commit.Partition, uint32) {
	t.Helper()
	m, err := newMetrics(nil, interval)
	if err != nil {
		t.Fatal(err)
	}
	var closing atomic.Bool
	d := &dispatcher{
		ws: window.New(maxRecords, 0), tr: commit.NewTracker(), interval: interval, maxFlights: 4,
		closing: &closing, ctx: ctx, m: m, log: slog.New(slog.DiscardHandler), now: time.Now,
	}
	sk, err := sink.New(sink.Config{
		Partitions: 1, MaxRecords: maxRecords, ListNameTemplate: DefaultListNameTemplate,
		AudiencePollInterval: -1, ParkedRetry: time.Second,
	}, sink.Deps{
		Pinterest: pin, Owned: func() map[int32]bool { return map[int32]bool{0: true} }, SetMode: d.setMode,
		Backoff: backoff, DeadLetter: func(context.Context, sink.Refused) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	d.sink = sk
	s := &sched{dispatcher: d, sink: sk}
	pt := d.tr.Assign("changes", 0, -1)
	return s, feed{ws: d.ws, tr: d.tr}, pt, s.resolvedList("aud")
}

// resolvedList interns the EMAIL list of audience aud, which Pinterest
// lists by its name (see pinFunc), and returns its id.
func (s *sched) resolvedList(aud string) uint32 {
	return uint32(s.sink.Intern(changes.List{Audience: aud, Type: ident.Email}, changes.Header{AdAccount: "549755885175"}, 0))
}
