package consumer_test

import (
	"testing"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestListsConvergeToOracle runs a generated Engage stream through one
// engine and checks every Pinterest list against the oracle.
func TestListsConvergeToOracle(t *testing.T) {
	r := newRig(t, 4, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 2000, Audiences: 8, Events: 20000, Seed: 7, MalformedFraction: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	want, malformed := oracle(t, recs)
	if malformed == 0 || len(want) < 8 {
		t.Fatalf("the stream should hold malformed records and fill lists (malformed %d, lists %d)", malformed, len(want))
	}
	r.produce(recs)
	cfg := engineConfig()
	cfg.AudiencePollInterval = 100 * time.Millisecond
	m := r.start(cfg)
	r.converge(want, 60*time.Second)
	// The status reports Pinterest's matched size of every audience, which
	// is not the number of records uploaded.
	waitFor(t, 10*time.Second, "audience sizes polled", func() bool {
		sizes := map[string]int{}
		for _, a := range r.sb.State().Audiences {
			sizes[a.CustomerListID] = a.Size
		}
		n := 0
		for _, a := range m.eng.Status().Audiences {
			for _, l := range a.Lists {
				if l.CustomerListID == "" || int(l.PinterestSize) != sizes[l.CustomerListID] {
					return false
				}
				n++
			}
		}
		return n == len(want)
	})
	// Every record is committed once its upload succeeded.
	end := endOffsets(t, r.brokers)
	deadline := time.Now().Add(30 * time.Second)
	for r.committed("pinsync-test") != end {
		if time.Now().After(deadline) {
			t.Fatalf("committed %d of %d records", r.committed("pinsync-test"), end)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.stop(t)

	// The dead-letter topic holds exactly the malformed records, with the
	// reason and the source position in headers.
	var bad []stream.Record
	for _, rec := range recs {
		if rec.Malformed {
			bad = append(bad, rec)
		}
	}
	dlq := readAll(t, r.brokers, "pinsync-test.dlq", len(bad), 10*time.Second)
	if len(dlq) != len(bad) || len(bad) != malformed {
		t.Fatalf("dead letters: got %d, generator made %d malformed, decoder rejected %d", len(dlq), len(bad), malformed)
	}
	seen := map[string]int{}
	for _, b := range bad {
		seen[string(b.Value)]++
	}
	for _, d := range dlq {
		if seen[string(d.Value)] == 0 {
			t.Errorf("dead letter %q is not one of the malformed records", d.Value)
		}
		seen[string(d.Value)]--
		h := map[string]string{}
		for _, kv := range d.Headers {
			h[kv.Key] = string(kv.Value)
		}
		if h["pinsync.reason"] == "" || h["pinsync.source.topic"] != topic || h["pinsync.source.offset"] == "" {
			t.Errorf("dead letter headers incomplete: %v", h)
		}
	}
}

// TestCommitsWaitForUploads: while Pinterest is down nothing is committed
// and nothing is lost; once it is back every list converges and every
// record is committed.
func TestCommitsWaitForUploads(t *testing.T) {
	r := newRig(t, 3, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 500, Audiences: 4, Events: 4000, Seed: 11, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	if err := r.sb.SetFaults(sandbox.Faults{Outage: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r.produce(recs)
	m := r.start(engineConfig())
	// Wait until every record has been applied, then watch for ten flush
	// intervals: the commits must not move.
	waitFor(t, 30*time.Second, "all events applied", func() bool {
		return counterSum(t, m.reg, "pinsync_events_total") >= float64(len(recs))
	})
	for i := 0; i < 10; i++ {
		time.Sleep(100 * time.Millisecond)
		if c := r.committed("pinsync-test"); c != 0 {
			t.Fatalf("committed %d records while Pinterest was down", c)
		}
	}
	if got := len(r.sb.State().CustomerLists); got != 0 {
		t.Fatalf("%d lists exist during the outage", got)
	}
	if err := r.sb.SetFaults(sandbox.Faults{}); err != nil {
		t.Fatal(err)
	}
	r.converge(want, 60*time.Second)
	end := endOffsets(t, r.brokers)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed("pinsync-test") == end })
	m.stop(t)
}

// TestMemoryCapPausesFetching: with Pinterest down and a small cap on
// buffered records, fetching pauses and the buffer stays bounded.
func TestMemoryCapPausesFetching(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 3000, Audiences: 6, Events: 30000, Seed: 5, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	if err := r.sb.SetFaults(sandbox.Faults{Outage: time.Hour}); err != nil {
		t.Fatal(err)
	}
	r.produce(recs)
	const limit = 2000
	cfg := engineConfig()
	cfg.MaxBuffered = limit
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "fetching paused", func() bool { return gauge(t, m.reg, "pinsync_fetch_paused") == 1 })
	for i := 0; i < 5; i++ {
		if b := m.eng.Status().Buffered; b > 2*limit {
			t.Fatalf("buffered %d records with a cap of %d", b, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if applied := counterSum(t, m.reg, "pinsync_events_total"); applied >= float64(len(recs)) {
		t.Fatalf("all %v events were read although fetching should be paused", applied)
	}
	if err := r.sb.SetFaults(sandbox.Faults{}); err != nil {
		t.Fatal(err)
	}
	r.converge(want, 90*time.Second)
	m.stop(t)
}

// TestByteCapHoldsThroughAnOutage: Pinterest is down while a steady
// stream over a fixed set of profiles arrives. The list stage's windows
// fill to sync.max_buffered_bytes and no further: the bytes counted never
// pass the cap, reading pauses (pinsync_fetch_paused 1) with records left
// unread, nothing is committed past what was uploaded, and once Pinterest
// is back the lists converge exactly and everything is committed.
func TestByteCapHoldsThroughAnOutage(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 4000, Audiences: 6, Events: 40000, Seed: 8, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	if err := r.sb.SetFaults(sandbox.Faults{Outage: time.Hour}); err != nil {
		t.Fatal(err)
	}
	const limit = 1 << 20
	cfg := engineConfig()
	cfg.MaxBufferedBytes = limit
	m := r.start(cfg)
	// The stream arrives in steady steps while the outage lasts.
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; i < len(recs); i += 2000 {
			r.produce(recs[i:min(i+2000, len(recs))])
			time.Sleep(50 * time.Millisecond)
		}
	}()
	peak := int64(0)
	sample := func() {
		st := m.eng.Status()
		peak = max(peak, st.BufferedBytes)
		if st.BufferedBytes > limit {
			t.Fatalf("the windows hold %d bytes with a cap of %d", st.BufferedBytes, limit)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for gauge(t, m.reg, "pinsync_fetch_paused") != 1 {
		sample()
		if time.Now().After(deadline) {
			t.Fatalf("reading never paused; the windows peaked at %d bytes", peak)
		}
		time.Sleep(2 * time.Millisecond)
	}
	<-produced
	for range 500 {
		sample()
		time.Sleep(2 * time.Millisecond)
	}
	if peak < limit/2 {
		t.Errorf("the windows peaked at %d bytes: the cap of %d was never approached", peak, limit)
	}
	if c := r.committed(cfg.Group); c >= int64(len(recs)) {
		t.Fatalf("%d input records committed during the outage", c)
	}
	if err := r.sb.SetFaults(sandbox.Faults{}); err != nil {
		t.Fatal(err)
	}
	r.converge(want, 90*time.Second)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(recs)) })
	t.Logf("peak %d bytes counted, cap %d", peak, limit)
	m.stop(t)
}

// TestRebalanceKeepsListsExact: a second member joins mid-stream and leaves
// again; partitions move twice and the lists still converge exactly.
func TestRebalanceKeepsListsExact(t *testing.T) {
	r := newRig(t, 6, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 3000, Audiences: 6, Events: 36000, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	third := len(recs) / 3
	r.produce(recs[:third])
	a := r.start(engineConfig())
	waitFor(t, 30*time.Second, "first member assigned", func() bool { return len(a.eng.Status().Partitions) == 6 })
	b := r.start(engineConfig())
	r.produce(recs[third : 2*third])
	waitFor(t, 30*time.Second, "second member assigned", func() bool { return len(b.eng.Status().Partitions) > 0 })
	b.stop(t)
	r.produce(recs[2*third:])
	r.converge(want, 90*time.Second)
	end := endOffsets(t, r.brokers)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed("pinsync-test") == end })
	a.stop(t)
}
