package main

// Tests of group membership: replicas killed in quick succession, without
// static membership, still converge exactly; a member kept out of its group
// says so.

import (
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
	"github.com/pinsync/pinsync/consumer"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// waitStable waits until both of the fleet's groups are Stable with n
// members each.
func (f *fleet) waitStable(within time.Duration, n int) {
	f.t.Helper()
	deadline := time.Now().Add(within)
	for {
		groups, err := kadm.NewClient(f.kcl).DescribeGroups(f.t.Context(), replicaGroup, replicaGroup+".lists")
		stable := err == nil && len(groups) == 2
		for _, g := range groups {
			stable = stable && g.Err == nil && g.State == "Stable" && len(g.Members) == n
		}
		if stable {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("the groups were not Stable with %d members within %s", n, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRapidKillsConvergeExactly runs three replicas as dynamic group members
// (no kafka.instance_id) with a 10s session timeout and the default 60s
// rebalance timeout and revoke timeout, at Pinterest's budget (400 writes a
// minute for the app), on a backlog; kills one at random with SIGKILL and
// starts it again at once, several times five seconds apart; then checks at
// lag 0 that the lists equal the oracle. A restarted replica joins both
// groups as a new member while the group still counts the dead one, which
// rebalances them again and again: each must still form within the
// rebalance timeout (see third_party/kfake/PATCH.md).
//
// The defaults are small; the scale (360 lists) is
// PINSYNC_KILLS_PROFILES=20000 PINSYNC_KILLS_AUDIENCES=120 PINSYNC_KILLS=8,
// and PINSYNC_KILLS_SEED picks other victims.
func TestRapidKillsConvergeExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test")
	}
	profiles := envInt("PINSYNC_KILLS_PROFILES", 2000)
	audiences := envInt("PINSYNC_KILLS_AUDIENCES", 12)
	kills := envInt("PINSYNC_KILLS", 4)
	seed := uint64(envInt("PINSYNC_KILLS_SEED", 1))
	settings := fleetSettings{writesPerMinute: "400", maxRecords: "5000", flushInterval: "10s",
		dynamic: true, sessionTimeout: "10s", rebalanceTimeout: "60s", revokeTimeout: "10s"}
	f := newFleetWith(t, 12, sandbox.Config{}, settings)
	// One backlog whatever the victims; twenty events a profile: the
	// backfill then puts members in every list.
	recs := generate(t, stream.Config{Profiles: profiles, Audiences: audiences, Events: 20 * profiles, Seed: 1})
	want, _ := expected(t, recs)
	f.produce(recs)
	for id := range 3 {
		f.start(id)
	}
	f.waitStable(time.Minute, 3)
	rng := rand.New(rand.NewPCG(seed, 19))
	var victims []int
	for range kills {
		time.Sleep(5 * time.Second)
		v := rng.IntN(3)
		victims = append(victims, v)
		f.kill9(v)
		f.start(v)
	}
	last := time.Now()
	f.waitLagZero(6 * time.Minute)
	took := time.Since(last)
	f.exact(want)
	calls, requests, limited := f.writes()
	t.Logf("kills: %d lists, %d profiles, %d events; replicas %v killed and restarted 5s apart; lag 0 and exact %s after the last kill; %d list writes, %d write requests, %d 429s",
		len(want), profiles, len(recs), victims, took.Round(time.Second), calls, requests, limited)
	if limited > 0 {
		t.Errorf("Pinterest answered 429 %d times", limited)
	}
}

// TestMemberOutOfItsGroupIsNotReadyUntilItRejoins keeps one stage's member
// out of its group: the broker answers its heartbeats "rebalance in
// progress" and never answers its JoinGroup. Once it has been out for longer
// than the session and rebalance timeouts together, /readyz answers 503
// naming the group, /status says why and since when, and
// pinsync_out_of_group_seconds passes the limit; the other stage's member
// stays in. When the broker answers again, the member rejoins and the
// service is ready.
func TestMemberOutOfItsGroupIsNotReadyUntilItRejoins(t *testing.T) {
	for _, stage := range []string{"profiles", "lists"} {
		t.Run(stage, func(t *testing.T) {
			t.Parallel()
			r := newSvcRig(t, 2, sandbox.Config{}, nil)
			r.cfg.Kafka.SessionTimeout = service.Duration(6 * time.Second)
			r.cfg.Kafka.RebalanceTimeout = service.Duration(4 * time.Second)
			r.cfg.Sync.RevokeTimeout = service.Duration(time.Second)
			const limit = 10 * time.Second
			group, other := r.cfg.Kafka.Group, r.cfg.Kafka.Group+".lists"
			if stage == "lists" {
				group, other = other, group
			}
			var hold atomic.Bool
			r.cluster.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
				r.cluster.KeepControl()
				hb := req.(*kmsg.HeartbeatRequest)
				if !hold.Load() || hb.Group != group {
					return nil, nil, false
				}
				resp := hb.ResponseKind().(*kmsg.HeartbeatResponse)
				resp.ErrorCode = kerr.RebalanceInProgress.Code
				return resp, nil, true
			})
			r.cluster.ControlKey(int16(kmsg.JoinGroup), func(req kmsg.Request) (kmsg.Response, error, bool) {
				r.cluster.KeepControl()
				// Handled without an answer: the client waits for one.
				return nil, nil, hold.Load() && req.(*kmsg.JoinGroupRequest).Group == group
			})
			r.start()

			held := time.Now()
			hold.Store(true)
			var reason string
			waitFor(t, limit+30*time.Second, "the service to turn not ready", func() bool {
				code, body := r.get("/readyz")
				reason = body
				return code == http.StatusServiceUnavailable
			})
			if took := time.Since(held); took < limit {
				t.Errorf("not ready %s after the broker stopped answering: before the limit (%s)", took, limit)
			}
			t.Logf("readyz: %s", reason)
			if want := "out of consumer group \"" + group + "\""; !strings.Contains(reason, want) {
				t.Errorf("/readyz: %q, want it to say %s", reason, want)
			}
			st := r.status()
			if st.Ready || st.NotReadyReason == "" || !strings.Contains(reason, st.NotReadyReason) {
				t.Errorf("/status: ready %v, reason %q; /readyz said %q", st.Ready, st.NotReadyReason, reason)
			}
			for _, g := range st.Groups {
				wantOut := g.Group == group
				if g.Member == wantOut || g.OutSince.IsZero() == wantOut {
					t.Errorf("/status: group %s member %v, out since %v", g.Group, g.Member, g.OutSince)
				}
			}
			if out := metricOf(t, r, "pinsync_out_of_group_seconds", `stage="`+stage+`"`); out <= limit.Seconds() {
				t.Errorf("pinsync_out_of_group_seconds{stage=%q} = %v, want above %v", stage, out, limit.Seconds())
			}
			if !r.statusOf(other).Member {
				t.Errorf("the member of %s is out of its group too", other)
			}

			hold.Store(false)
			waitFor(t, time.Minute, "the service to be ready again", func() bool {
				code, _ := r.get("/readyz")
				return code == http.StatusOK
			})
			if out := metricOf(t, r, "pinsync_out_of_group_seconds", `stage="`+stage+`"`); out != 0 {
				t.Errorf("pinsync_out_of_group_seconds{stage=%q} = %v after the rejoin, want 0", stage, out)
			}
		})
	}
}

// status reads /status.
func (r *svcRig) status() service.StatusDoc {
	r.t.Helper()
	_, body := r.get("/status")
	var st service.StatusDoc
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		r.t.Fatalf("/status: %v", err)
	}
	return st
}

// statusOf returns a group's entry of /status.
func (r *svcRig) statusOf(group string) consumer.GroupStatus {
	r.t.Helper()
	for _, g := range r.status().Groups {
		if g.Group == group {
			return g
		}
	}
	r.t.Fatalf("/status names no group %s", group)
	return consumer.GroupStatus{}
}
