package membership

import (
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestOutOfGroupFromJoinOrLossUntilAssigned(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	tr := New("g", func() time.Time { return now })
	write := func(key kmsg.Key) { tr.OnBrokerWrite(kgo.BrokerMetadata{}, int16(key), 0, 0, 0, nil) }
	type want struct {
		member, joined bool
		out            time.Duration
	}
	check := func(step string, w want) {
		t.Helper()
		st := tr.Status()
		if st.Group != "g" || st.Member != w.member || st.Joined != w.joined || st.Out(now) != w.out {
			t.Errorf("%s: member %v, joined %v, out %s; want %v, %v, %s", step, st.Member, st.Joined, st.Out(now), w.member, w.joined, w.out)
		}
	}

	now = start.Add(3 * time.Second)
	write(kmsg.JoinGroup)
	check("joining at start", want{out: 3 * time.Second})

	tr.Assigned()
	now = now.Add(time.Minute)
	check("assigned", want{member: true, joined: true})

	write(kmsg.Heartbeat)
	write(kmsg.OffsetCommit)
	check("other requests", want{member: true, joined: true})

	write(kmsg.JoinGroup)
	now = now.Add(2 * time.Second)
	write(kmsg.JoinGroup) // sent again (MEMBER_ID_REQUIRED, a timeout): still out since the first
	now = now.Add(5 * time.Second)
	check("rejoining", want{joined: true, out: 7 * time.Second})

	tr.Assigned()
	check("assigned again", want{member: true, joined: true})

	tr.Lost()
	now = now.Add(time.Second)
	tr.Lost()
	write(kmsg.JoinGroup)
	now = now.Add(time.Second)
	check("lost, then joining", want{joined: true, out: 2 * time.Second})
}

func TestReadyUnlessOutForLongerThanTheLimit(t *testing.T) {
	since := time.Unix(1_800_000_000, 0)
	const limit = 70 * time.Second
	for _, tc := range []struct {
		name string
		st   Status
		at   time.Duration // after since
		want string        // in the error; "" for ready
	}{
		{"starting", Status{}, 10 * time.Second, `not yet a member of consumer group "g"`},
		{"never joined", Status{}, 71 * time.Second, `not yet a member of consumer group "g" after 1m11s, longer than the session and rebalance timeouts together (1m10s)`},
		{"member", Status{Member: true, Joined: true}, time.Hour, ""},
		{"in a rebalance", Status{Joined: true}, 70 * time.Second, ""},
		{"out too long", Status{Joined: true}, 71 * time.Second, `out of consumer group "g" for 1m11s, longer than the session and rebalance timeouts together (1m10s)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tc.st
			st.Group = "g"
			if !st.Member {
				st.OutSince = since
			}
			err := st.Ready(since.Add(tc.at), limit)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("not ready: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Ready = %v, want %q", err, tc.want)
			}
		})
	}
}
