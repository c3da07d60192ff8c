package stream

import (
	"maps"
	"testing"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// expectedFromState computes the lists from what the generator knows of its
// profiles — the other way round from the Oracle, which only sees decoded
// records.
func expectedFromState(t *testing.T, r *run) map[ListKey]Set {
	t.Helper()
	out := make(map[ListKey]Set)
	add := func(a int, typ ident.Type, value []byte) {
		h, err := ident.Of(typ, value)
		if err != nil {
			t.Fatalf("generator identifier %q: %v", value, err)
		}
		k := ListKey{r.g.audiences[a].key, typ}
		if out[k] == nil {
			out[k] = make(Set)
		}
		out[k][h] = struct{}{}
	}
	for i := range r.profiles {
		p := &r.profiles[i]
		if p.forgotten {
			continue
		}
		for a := range r.g.audiences {
			if !r.member(i, a) {
				continue
			}
			for e := range int(p.emails) {
				add(a, ident.Email, r.g.ids.appendEmail(nil, uint64(i), e))
			}
			for _, d := range p.devices {
				if !d.tracked {
					continue
				}
				typ := ident.IDFA
				if d.android {
					typ = ident.MAID
				}
				add(a, typ, r.g.ids.appendDeviceID(nil, uint64(i), int(d.n), false))
			}
		}
	}
	return out
}

// TestOracleAgreesWithGeneratorState runs the backfill and then churn
// action by action, and checks after each phase that the decoded records,
// through the Oracle, say exactly what the generator meant. Consent changes
// are off: they make the two views differ on purpose (a profile that grants
// consent again stays out of its audiences until it re-enters).
func TestOracleAgreesWithGeneratorState(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		testOracleAgreesWithGeneratorState(t, Config{
			Profiles: 1500, Audiences: 70, Events: 1 << 30, Seed: 7,
			MalformedFraction: 0.01, NativeFraction: 0.1, ForgetFraction: 0.01,
			DeviceFraction: 0.6, UntrackedFraction: 0.3, DevicesPerProfile: 3,
		})
	})
	t.Run("profile prefix", func(t *testing.T) {
		testOracleAgreesWithGeneratorState(t, Config{Profiles: 300, Seed: 8, ProfilePrefix: "t9-", AudiencePrefix: "t9_"})
	})
}

func testOracleAgreesWithGeneratorState(t *testing.T, cfg Config) {
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := schemas.NewDecoder(schemas.DecoderConfig{})
	if err != nil {
		t.Fatal(err)
	}
	o := NewOracle(0)
	var ev schemas.Event
	r := newRun(g, func(rec Record) error {
		err := o.ApplyRecord(dec, &ev, rec.Key, rec.Value)
		if (err != nil) != rec.Malformed {
			t.Fatalf("malformed %v, decode error %v: %s", rec.Malformed, err, rec.Value)
		}
		return nil
	})
	check := func(phase string) {
		t.Helper()
		want := expectedFromState(t, r)
		if got := o.Expected(); !maps.EqualFunc(got, want, maps.Equal) {
			t.Fatalf("after %s (%+v):\n%s", phase, r.stats, Diff(want, got))
		}
	}
	if err := r.backfill(); err != nil {
		t.Fatal(err)
	}
	check("backfill")
	if r.stats.Backfill == 0 {
		t.Fatal("empty backfill")
	}
	for range 10 * cfg.Profiles {
		i, ok := r.pickProfile()
		if !ok {
			break
		}
		if err := r.action(i); err != nil {
			t.Fatal(err)
		}
	}
	check("churn")
	st := r.stats
	if st.Forgets == 0 || st.TrackingOff == 0 || st.TrackingOn == 0 || st.Native == 0 || st.Exits == 0 {
		t.Errorf("churn missed a kind of change: %+v", st)
	}
}
