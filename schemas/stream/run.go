package stream

import (
	"math/rand/v2"
	"time"
)

// run is the state of one Run: the profiles as the customer-data platform
// knows them, and the buffers records are written into.
type run struct {
	g     *Generator
	cfg   Config
	rng   *rand.Rand
	emit  func(Record) error
	stats Stats
	now   time.Time

	profiles []profile
	alive    int      // profiles not forgotten
	members  []uint64 // membership bits, words per profile
	words    int

	idx     uint64 // profile of the record being written
	key     []byte
	val     []byte
	bad     []byte
	scratch []byte
}

type profile struct {
	emails    uint8 // addresses 0..emails-1
	devices   []device
	forgotten bool
	noConsent bool
}

type device struct {
	n       uint8 // ordinal: the id derives from (profile, n)
	android bool
	tracked bool // ad tracking enabled
	limited bool // iOS hides the id: it reads as all zeros
}

func newRun(g *Generator, emit func(Record) error) *run {
	cfg := g.cfg
	r := &run{
		g:       g,
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		emit:    emit,
		now:     cfg.Start,
		words:   (cfg.Audiences + 63) / 64,
		key:     make([]byte, 0, 32),
		val:     make([]byte, 0, 2048),
		bad:     make([]byte, 0, 2048),
		scratch: make([]byte, 0, 256),
	}
	r.profiles = make([]profile, cfg.Profiles)
	r.alive = cfg.Profiles
	r.members = make([]uint64, cfg.Profiles*r.words)
	for i := range r.profiles {
		p := &r.profiles[i]
		// Most profiles have one email; some have several.
		p.emails = 1
		for int(p.emails) < cfg.EmailsPerProfile && r.rng.Float64() < 0.35 {
			p.emails++
		}
		if cfg.DevicesPerProfile > 0 && r.rng.Float64() < cfg.DeviceFraction {
			n := 1
			for n < cfg.DevicesPerProfile && r.rng.Float64() < 0.2 {
				n++
			}
			for range n {
				r.addDevice(uint64(i), p)
			}
		}
		for a := range g.audiences {
			if r.rng.Float64() < g.audiences[a].rate {
				r.setMember(i, a, true)
			}
		}
	}
	return r
}

// addDevice gives profile idx its next device. Whether it is an Android
// device derives from (idx, n) alone, like its id, so that the population
// of Pinterest users (Generator.Population) knows every device without
// running the stream.
func (r *run) addDevice(idx uint64, p *profile) *device {
	n := len(p.devices)
	d := device{n: uint8(n), android: r.g.ids.android(idx, n)}
	d.tracked = r.rng.Float64() >= r.cfg.UntrackedFraction
	d.limited = !d.tracked && !d.android && r.rng.IntN(2) == 0
	p.devices = append(p.devices, d)
	return &p.devices[len(p.devices)-1]
}

func (r *run) member(i, a int) bool {
	return r.members[i*r.words+a/64]&(1<<(a%64)) != 0
}

func (r *run) setMember(i, a int, v bool) {
	w := &r.members[i*r.words+a/64]
	if v {
		*w |= 1 << (a % 64)
	} else {
		*w &^= 1 << (a % 64)
	}
}

// backfill sends, audience by audience, one event per member per identifier
// value, as Engage does when a destination is connected.
func (r *run) backfill() error {
	for a := range r.g.audiences {
		for i := range r.profiles {
			if !r.member(i, a) {
				continue
			}
			r.now = r.now.Add(time.Duration(r.rng.IntN(3)) * time.Millisecond)
			before := r.stats.Records
			err := r.membership(i, a, true)
			r.stats.Backfill += r.stats.Records - before
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// Churn action weights, out of 1000 (the rest are plain identifies).
const (
	wEnter       = 300
	wExit        = 250
	wDuplicate   = 100
	wEmail       = 70
	wDevice      = 50
	wTrackingOff = 40
	wTrackingOn  = 20
)

// churn picks a profile and an action until Events records are out.
func (r *run) churn() error {
	for {
		i, ok := r.pickProfile()
		if !ok {
			return nil
		}
		gap := 2 * int64(r.cfg.MeanGap)
		if gap > 0 {
			r.now = r.now.Add(time.Duration(r.rng.Int64N(gap)))
		}
		if err := r.action(i); err != nil {
			return err
		}
	}
}

// pickProfile chooses a live profile; a few profiles are far more active
// than the rest.
func (r *run) pickProfile() (int, bool) {
	if r.alive == 0 {
		return 0, false
	}
	n := len(r.profiles)
	for range 32 {
		var i int
		if r.rng.IntN(10) < 3 {
			i = r.rng.IntN(max(1, n/20))
		} else {
			i = r.rng.IntN(n)
		}
		if !r.profiles[i].forgotten {
			return i, true
		}
	}
	start := r.rng.IntN(n)
	for k := range n {
		if i := (start + k) % n; !r.profiles[i].forgotten {
			return i, true
		}
	}
	return 0, false
}

func (r *run) action(i int) error {
	p := &r.profiles[i]
	if r.cfg.NativeFraction > 0 && r.rng.Float64() < r.cfg.ForgetFraction {
		r.stats.Forgets++
		p.forgotten = true
		r.alive--
		return r.forget(i)
	}
	if r.cfg.ConsentCategory != "" && r.rng.Float64() < r.cfg.ConsentFraction {
		r.stats.ConsentFlip++
		p.noConsent = !p.noConsent
		return r.identify(i, -1)
	}
	nA := len(r.g.audiences)
	switch w := r.rng.IntN(1000); {
	case w < wEnter:
		a := r.rng.IntN(nA)
		for k := 0; k < 4 && r.member(i, a); k++ {
			a = r.rng.IntN(nA)
		}
		if r.member(i, a) {
			r.stats.Duplicates++
		} else {
			r.stats.Entries++
		}
		r.setMember(i, a, true)
		return r.membership(i, a, true)
	case w < wEnter+wExit:
		a, ok := r.someAudience(i)
		if !ok { // an exit for an audience the profile is not in
			a = r.rng.IntN(nA)
			r.stats.Duplicates++
		} else {
			r.stats.Exits++
		}
		r.setMember(i, a, false)
		return r.membership(i, a, false)
	case w < wEnter+wExit+wDuplicate:
		r.stats.Duplicates++
		a := r.rng.IntN(nA)
		return r.membership(i, a, r.member(i, a))
	case w < wEnter+wExit+wDuplicate+wEmail:
		if int(p.emails) >= r.cfg.EmailsPerProfile {
			break
		}
		r.stats.EmailsAdded++
		p.emails++
		return r.newIdentifier(i, int(p.emails)-1, -1)
	case w < wEnter+wExit+wDuplicate+wEmail+wDevice:
		if len(p.devices) >= r.cfg.DevicesPerProfile {
			break
		}
		r.stats.DevicesAdded++
		d := r.addDevice(uint64(i), p)
		if !d.tracked {
			return r.identify(i, len(p.devices)-1)
		}
		return r.newIdentifier(i, -1, len(p.devices)-1)
	case w < wEnter+wExit+wDuplicate+wEmail+wDevice+wTrackingOff:
		d, ok := r.someDevice(p, true)
		if !ok {
			break
		}
		r.stats.TrackingOff++
		p.devices[d].tracked = false
		return r.identify(i, d)
	case w < wEnter+wExit+wDuplicate+wEmail+wDevice+wTrackingOff+wTrackingOn:
		d, ok := r.someDevice(p, false)
		if !ok {
			break
		}
		r.stats.TrackingOn++
		p.devices[d].tracked, p.devices[d].limited = true, false
		return r.newIdentifier(i, -1, d)
	}
	r.stats.Identifies++
	return r.identify(i, -1)
}

// someAudience returns an audience profile i is in, if any.
func (r *run) someAudience(i int) (int, bool) {
	n := len(r.g.audiences)
	start := r.rng.IntN(n)
	for k := range n {
		if a := (start + k) % n; r.member(i, a) {
			return a, true
		}
	}
	return 0, false
}

// someDevice returns a device of p whose tracking is as given, if any.
func (r *run) someDevice(p *profile, tracked bool) (int, bool) {
	for k := range p.devices {
		if p.devices[k].tracked == tracked {
			return k, true
		}
	}
	return 0, false
}
