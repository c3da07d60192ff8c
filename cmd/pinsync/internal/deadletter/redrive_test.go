package deadletter

import (
	"context"
	"testing"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/schemas/ident"
)

// TestRefusedHashIsSentAsWhereTheAudienceStandsNow: a refused hash goes
// back as an add when it is a member's now, as a removal when it is not
// and a removal of it was refused, and not at all when it is not and only
// adds were refused; several refusals of one hash for one list send it
// once; without the members, the last refused operation is sent.
func TestRefusedHashIsSentAsWhereTheAudienceStandsNow(t *testing.T) {
	h := func(b byte) ident.Hash { return ident.Hash{b} }
	letter := func(b byte, op string) Letter {
		return Letter{Reason: ReasonRejected, Audience: "vip", ListType: "EMAIL", Operation: op, Value: h(b).AppendHex(nil)}
	}
	vip := changes.List{Audience: "vip", Type: ident.Email}
	letters := []Letter{
		letter(1, "ADD"),                      // a member now
		letter(2, "ADD"),                      // not a member, only added
		letter(3, "ADD"), letter(3, "REMOVE"), // not a member, a removal refused
		letter(4, "REMOVE"), // a member again
		{Reason: ReasonRejected, Audience: "vip", ListType: "EMAIL", Operation: "ADD", Value: []byte("not hex")},
	}
	src := Source{AdAccount: func(changes.List, string) string { return "549755885175" }}
	members := func(_ context.Context, lists []changes.List) (map[changes.List][]ident.Hash, error) {
		if len(lists) != 1 || lists[0] != vip {
			t.Errorf("members asked for %v, want [vip/EMAIL]", lists)
		}
		return map[changes.List][]ident.Hash{vip: {h(1), h(4)}}, nil
	}
	for _, c := range []struct {
		name    string
		members func(context.Context, []changes.List) (map[changes.List][]ident.Hash, error)
		want    map[byte]changes.Op
		skipped int
	}{
		{"with the members", members, map[byte]changes.Op{1: changes.Add, 3: changes.Remove, 4: changes.Add}, 3},
		{"without them", nil, map[byte]changes.Op{1: changes.Add, 2: changes.Add, 3: changes.Remove, 4: changes.Remove}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			src.Members = c.members
			var r Redrive
			if err := planRequeue(t.Context(), src, letters, &r); err != nil {
				t.Fatal(err)
			}
			got := map[byte]changes.Op{}
			for _, q := range r.Requeue {
				if q.List != vip || q.AdAccount != "549755885175" {
					t.Errorf("re-queued %+v to list %v of account %q", q.Hash, q.List, q.AdAccount)
				}
				got[q.Hash[0]] = q.Op
			}
			if len(got) != len(c.want) || len(r.Requeue) != len(c.want) {
				t.Errorf("re-queued %v, want %v", got, c.want)
			}
			for b, op := range c.want {
				if got[b] != op {
					t.Errorf("hash %d re-queued as %v, want %v", b, got[b], op)
				}
			}
			if len(r.Skipped) != c.skipped {
				t.Errorf("left alone %d: %+v; want %d", len(r.Skipped), r.Skipped, c.skipped)
			}
		})
	}
}
