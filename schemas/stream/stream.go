// Package stream generates realistic, reproducible streams of audience
// events as Segment Engage (and, optionally, pinsync's native format)
// publishes them to Kafka, and computes what Pinterest's customer lists must
// hold once such a stream has been synced.
//
// The generator writes records keyed by profile id: a backfill (one event
// per current member of each audience per identifier value, as Engage does
// on a first sync), then churn — entries, exits, repeated events, new
// emails and devices, ad tracking turned off and on, consent withdrawn,
// privacy deletions — with a few malformed records in between. Profiles
// never share an identifier: every identifier is derived from its profile's
// index. All names, addresses and ids are invented.
//
// The Oracle is the reference: it is fed the events that the real decoder
// (package schemas) makes of the records and applies plain, map-based
// semantics to them. It is not the sync engine (package consumer) and knows
// nothing of windows, uploads or Kafka; Partition only mirrors the
// producer's choice of partition so that tools and tests agree with it.
package stream

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Record is one generated Kafka record. Key is the profile id. The slices
// are only valid during the callback that receives them: use Clone to keep
// a record.
type Record struct {
	Key, Value []byte
	// Malformed is set on the records that were made broken on purpose; a
	// correct decoder rejects exactly these.
	Malformed bool
	// Timestamp is the record's event time (also in its JSON).
	Timestamp time.Time
}

// Clone returns a copy of r that owns its bytes.
func (r Record) Clone() Record {
	r.Key = append([]byte(nil), r.Key...)
	r.Value = append([]byte(nil), r.Value...)
	return r
}

// Stats counts what a Run emitted.
type Stats struct {
	Records   int // every record, malformed ones included
	Malformed int
	Native    int // records in the native format
	Backfill  int // records of the backfill phase (malformed included)

	// Actions of the churn phase (one action may be several records).
	Entries, Exits, Duplicates       int
	EmailsAdded, DevicesAdded        int
	TrackingOff, TrackingOn          int
	Identifies, Forgets, ConsentFlip int
}

// Generator makes streams for one Config. It holds no state between runs:
// every Run with the same Config emits the same bytes. It is safe for
// concurrent Runs.
type Generator struct {
	cfg       Config
	audiences []audience
	spaceID   string
	ids       identities
}

type audience struct {
	key      string
	identify bool    // delivered as identify calls (else track)
	rate     float64 // share of profiles that are members at the start
	personas []byte  // the context.personas member, precomputed
}

// New validates cfg and returns a Generator for it.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	g := &Generator{cfg: cfg, ids: newIdentities(cfg.ProfilePrefix)}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0xa0d1e5ce))
	g.spaceID = string(appendBase62([]byte("spa_"), mix(cfg.Seed^0x5ace), 22))
	g.audiences = make([]audience, cfg.Audiences)
	for i := range g.audiences {
		a := &g.audiences[i]
		a.key = cfg.AudiencePrefix + audienceName(i)
		a.identify = rng.Float64() < cfg.IdentifyFraction
		// Audience sizes vary a lot: a log-uniform factor in [1/4, 4].
		a.rate = min(0.9, cfg.MembershipRate*math.Exp2(rng.Float64()*4-2))
		class := "audience"
		if a.identify && i%5 == 4 {
			class = "journey_step"
		}
		b := appendKey(nil, "personas")
		b = append(b, `{"computation_class":"`...)
		b = append(b, class...)
		b = append(b, `","computation_id":"aud_`...)
		b = appendBase62(b, mix(cfg.Seed^uint64(i)<<20), 27)
		b = append(b, `","computation_key":`...)
		b = appendString(b, a.key)
		b = append(b, `,"namespace":"`...)
		b = append(b, g.spaceID...)
		b = append(b, `","space_id":"`...)
		b = append(b, g.spaceID...)
		b = append(b, '"')
		if i%3 == 1 { // newer destinations also get the external id
			b = append(b, `,"external_audience_id":"`...)
			b = strconv.AppendUint(b, mix(cfg.Seed^uint64(i))%1e12, 10)
			b = append(b, '"')
		}
		a.personas = append(b, '}')
	}
	return g, nil
}

// Config returns the Generator's configuration with defaults filled in.
func (g *Generator) Config() Config { return g.cfg }

// Audiences returns the audience keys (prefix included), in order.
func (g *Generator) Audiences() []string {
	keys := make([]string, len(g.audiences))
	for i, a := range g.audiences {
		keys[i] = a.key
	}
	return keys
}

// ProfileID returns the id (and record key) of profile i.
func (g *Generator) ProfileID(i int) string {
	return string(appendProfileID(nil, g.cfg.ProfilePrefix, uint64(i)))
}

func appendProfileID(b []byte, prefix string, idx uint64) []byte {
	b = append(b, prefix...)
	var d [20]byte
	n := strconv.AppendUint(d[:0], idx, 10)
	for i := len(n); i < 7; i++ {
		b = append(b, '0')
	}
	return append(b, n...)
}

// Collect runs g's stream for cfg and returns copies of all its records.
func Collect(cfg Config) ([]Record, Stats, error) {
	g, err := New(cfg)
	if err != nil {
		return nil, Stats{}, err
	}
	recs := make([]Record, 0, g.cfg.Events)
	st, err := g.Run(func(r Record) error {
		recs = append(recs, r.Clone())
		return nil
	})
	return recs, st, err
}

// errStop ends a run once Events records are out.
var errStop = errors.New("stream: enough records")

// Run emits the stream, record by record, to emit and returns what it
// emitted. An error from emit stops the run and is returned. Run stops
// early, with a short stream, only when every profile has been forgotten.
func (g *Generator) Run(emit func(Record) error) (Stats, error) {
	r := newRun(g, emit)
	err := r.backfill()
	if err == nil {
		err = r.churn()
	}
	if errors.Is(err, errStop) {
		err = nil
	}
	return r.stats, err
}
