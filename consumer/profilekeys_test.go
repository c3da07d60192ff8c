package consumer_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// TestChangelogKnowsProfilesByDigestOnly: profile ids are often emails, so
// the changelog keys each profile by a 12-byte digest of its id: no record
// of it holds a profile id, in its key or its value.
func TestChangelogKnowsProfilesByDigestOnly(t *testing.T) {
	r := newRig(t, 2, sandbox.Config{})
	recs, _, err := stream.Collect(stream.Config{Profiles: 200, Audiences: 3, Events: 2000, Seed: 9, MalformedFraction: stream.None,
		ProfilePrefix: "someone."})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, rec := range recs {
		ids[string(rec.Key)] = true
	}
	want, _ := oracle(t, recs)
	r.produce(recs)
	cfg := engineConfig()
	m := r.start(cfg)
	r.converge(want, 30*time.Second)
	waitFor(t, 30*time.Second, "every record committed", func() bool { return r.committed(cfg.Group) == int64(len(recs)) })
	m.stop(t)

	cl, err := kgo.NewClient(kgo.SeedBrokers(r.brokers...), kgo.ConsumeTopics(cfg.Group+".changelog"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	profiles := 0
	for ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(rec *kgo.Record) {
			k := string(rec.Key)
			switch {
			case k == topic+"\x01pos":
				return
			case strings.HasPrefix(k, topic+"\x03"): // an audience's name and override
			case strings.HasPrefix(k, topic+"\x02") && len(k) == len(topic)+1+12:
				profiles++
			default:
				t.Errorf("changelog key %q is neither a position, an audience nor a profile digest", k)
			}
			for id := range ids {
				if bytes.Contains(rec.Key, []byte(id)) || bytes.Contains(rec.Value, []byte(id)) {
					t.Errorf("changelog record at %d/%d holds the profile id %q", rec.Partition, rec.Offset, id)
				}
			}
		})
	}
	if profiles == 0 {
		t.Fatal("no profile in the changelog: the check proves nothing")
	}
}
