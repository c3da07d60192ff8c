package consumer_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestFailedTransactionsLoseNothing: the broker refuses the first commit
// of every transactional id of the profile stage, and every other commit
// after. A refused transaction never becomes visible, so its records must
// be read and applied again: from the restored position, or, when the
// partition's first transaction failed and the changelog holds no
// position, from the group's committed offset, not from where the fetch
// had got to. The lists end up exact and everything is committed.
func TestFailedTransactionsLoseNothing(t *testing.T) {
	r := newRig(t, 3, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 1500, Audiences: 6, Events: 12000, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := oracle(t, recs)
	cfg := engineConfig()
	var mu sync.Mutex
	commits := map[string]int{}
	refused := 0
	r.cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.cluster.KeepControl()
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || !strings.HasPrefix(end.TransactionalID, cfg.Group+".profiles.") {
			return nil, nil, false
		}
		mu.Lock()
		defer mu.Unlock()
		n := commits[end.TransactionalID]
		commits[end.TransactionalID]++
		if n%2 != 0 {
			return nil, nil, false
		}
		refused++
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})
	m := r.start(cfg)
	// In parts, so that each partition has several transactions.
	const parts = 4
	for i := range parts {
		upTo := len(recs) * (i + 1) / parts
		r.produce(recs[len(recs)*i/parts : upTo])
		waitFor(t, 60*time.Second, "the records produced so far committed", func() bool {
			return r.committed(cfg.Group) == int64(upTo)
		})
	}
	r.converge(want, 30*time.Second)
	m.stop(t)
	mu.Lock()
	defer mu.Unlock()
	if refused < 2*parts {
		t.Fatalf("only %d transaction commits refused; the test did not exercise restarts", refused)
	}
}

// TestAPartitionWhoseTransactionsAlwaysFailIsUnhealthy: the broker refuses
// every commit of input partition 0's transactions (a record it can never
// take). Each failure starts the partition again, and each start succeeds:
// the partition still counts as failing from its first failed commit, so
// once that is longer than sync.unhealthy_after the engine is unhealthy
// naming it, and pinsync_partitions_unhealthy counts it; partition 1,
// whose commits succeed, is not named.
func TestAPartitionWhoseTransactionsAlwaysFailIsUnhealthy(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 1000, Seed: 61, MalformedFraction: stream.None})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engineConfig()
	cfg.ShutdownGrace = 2 * time.Second
	cfg.UnhealthyAfter = 500 * time.Millisecond
	r.cluster.ControlKey(int16(kmsg.EndTxn), func(req kmsg.Request) (kmsg.Response, error, bool) {
		r.cluster.KeepControl()
		end := req.(*kmsg.EndTxnRequest)
		if !end.Commit || end.TransactionalID != cfg.Group+".profiles."+topic+".0" {
			return nil, nil, false
		}
		resp := end.ResponseKind().(*kmsg.EndTxnResponse)
		resp.ErrorCode = kerr.InvalidTxnState.Code
		return resp, nil, true
	})
	r.produce(recs)
	m := r.start(cfg)
	waitFor(t, 30*time.Second, "the engine unhealthy naming partition 0", func() bool {
		err := m.eng.Healthy()
		return err != nil && strings.Contains(err.Error(), topic+"/0 for")
	})
	if err := m.eng.Healthy(); strings.Contains(err.Error(), topic+"/1") {
		t.Errorf("Healthy: %v; partition 1 commits", err)
	}
	if n := seriesWhere(t, m.reg, "pinsync_partitions_unhealthy", map[string]string{"stage": "profiles"},
		func(mm *dto.Metric) float64 { return mm.GetGauge().GetValue() }); n != 1 {
		t.Errorf("pinsync_partitions_unhealthy{stage=\"profiles\"} = %v; want 1", n)
	}
	m.stopAnyway()
}
