package profiles

import (
	"crypto/sha256"
	"strings"

	"github.com/pinsync/pinsync/consumer/changes"
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// op is what a change does to a list.
type op = changes.Op

const (
	opAdd    = changes.Add
	opRemove = changes.Remove
)

// change is one record to add to or remove from one audience's list of one
// identifier type.
type change struct {
	aud  uint32
	typ  ident.Type
	hash ident.Hash
	op   op
	// vouched is set when the profile state vouches for where the list
	// stood before the change: the record was out before an add, in before
	// a remove (see changes.Change.Vouched). An exit pinsync never saw
	// enter is not vouched: the list may be older than the state.
	vouched bool
}

// outBit marks an audience a profile has been seen leaving; a repeated exit
// of such an audience uploads nothing.
const outBit = 1 << 31

// profile is the state pinsync keeps for one profile: its identifiers in
// arrival order (oldest first) and the audiences it has been seen in or
// leaving. Audiences are interned ids; the member flag is the absence of
// outBit.
type profile struct {
	ids  []schemas.Identifier
	auds []uint32
}

func (p *profile) member(aud uint32) (known, in bool) {
	for _, a := range p.auds {
		if a&^outBit == aud {
			return true, a&outBit == 0
		}
	}
	return false, false
}

func (p *profile) setMember(aud uint32, in bool) {
	v := aud
	if !in {
		v |= outBit
	}
	for i, a := range p.auds {
		if a&^outBit == aud {
			p.auds[i] = v
			return
		}
	}
	p.auds = append(p.auds, v)
}

func (p *profile) has(id schemas.Identifier) bool {
	for _, x := range p.ids {
		if x == id {
			return true
		}
	}
	return false
}

func (p *profile) remove(id schemas.Identifier) bool {
	for i, x := range p.ids {
		if x == id {
			p.ids = append(p.ids[:i], p.ids[i+1:]...)
			return true
		}
	}
	return false
}

// profiles is the state of the profiles of one partition: a table from
// profile id to the profile packed (see pack) into one record with its id,
// so that a million profiles (two identifiers, three audiences) take about
// 140 bytes each (MeasureState; 180 with a Go map). It is owned by the
// partition's worker goroutine; it is not safe for concurrent use.
type profiles struct {
	t          table
	maxPerType int
	// track, when set, keeps dirty: the ids of the profiles changed since
	// the last takeDirty, each once (a flag in the packed profile says it
	// is listed).
	track bool
	dirty []string
	// tally is told how the profiles held here count in each audience: a
	// profile entering (+1) or leaving (-1) it with typ 0, and each of its
	// identifiers of type typ entering or leaving the audience's list
	// with it or on its own. The counts are exactly the audience's members
	// and its lists' records held here.
	tally func(aud uint32, typ ident.Type, delta int)
	// scratch is the unpacked profile being worked on.
	scratch profile
	// buf is pack's reusable output.
	buf []byte
	// idBuf holds the profile id being digested.
	idBuf []byte
}

// profileKeyLen is the length of a profile's key: the first 12 bytes of
// the SHA-256 of its id. The state and the changelog know a profile by its
// key only, never by its id (often an email). 96 bits keep collisions out
// of reach (among 100 million profiles of a partition, the chance of one is
// about 10^-13) at no memory cost over a typical id: 16 bytes would move a
// profile's record into the next allocation size class.
const profileKeyLen = 12

// digest writes the key of profile id into dst.
func (s *profiles) digest(dst *[profileKeyLen]byte, id string) {
	s.idBuf = append(s.idBuf[:0], id...)
	sum := sha256.Sum256(s.idBuf)
	copy(dst[:], sum[:profileKeyLen])
}

// keyOf returns the key of profile id.
func (s *profiles) keyOf(id string) string {
	var k [profileKeyLen]byte
	s.digest(&k, id)
	return string(k[:])
}

// touch lists the profile of key as changed (it is written to the
// changelog by the next takeDirty), if it is held and not listed yet.
func (s *profiles) touch(key string) {
	j, v := s.t.ref(key)
	if j < 0 || !s.track || v[1]&dirtyFlag != 0 {
		return
	}
	v[1] |= dirtyFlag
	s.dirty = append(s.dirty, key)
}

// newProfiles returns an empty state keeping at most maxPerType identifiers
// of each type per profile and telling tally how profiles and their
// identifiers enter and leave audiences (nil: nobody).
func newProfiles(maxPerType int, tally func(aud uint32, typ ident.Type, delta int)) *profiles {
	if tally == nil {
		tally = func(uint32, ident.Type, int) {}
	}
	return &profiles{maxPerType: maxPerType, tally: tally}
}

// dirtyFlag, in the second byte of a packed profile, marks a profile
// listed in dirty. Identifier counts stay far below 1<<15.
const dirtyFlag = 0x80

// pack encodes p as: identifier count (2 bytes, little endian, the top bit
// being dirtyFlag when dirty is set), each identifier as its type and
// 32-byte hash, then each audience as 4 bytes (little endian, with
// outBit). It writes into s's reusable buffer, valid until the next pack;
// table.setAt copies it.
func (s *profiles) pack(p *profile, dirty bool) []byte {
	hi := byte(len(p.ids) >> 8)
	if dirty {
		hi |= dirtyFlag
	}
	b := append(s.buf[:0], byte(len(p.ids)), hi)
	for _, id := range p.ids {
		b = append(b, byte(id.Type))
		b = append(b, id.Hash[:]...)
	}
	for _, a := range p.auds {
		b = append(b, byte(a), byte(a>>8), byte(a>>16), byte(a>>24))
	}
	s.buf = b
	return b
}

// load unpacks v (empty: a new profile) into the scratch profile, which
// stays valid until the next load.
func (s *profiles) load(v []byte) *profile {
	p := &s.scratch
	p.ids, p.auds = p.ids[:0], p.auds[:0]
	if len(v) < 2 {
		return p
	}
	n := int(v[0]) | int(v[1]&^dirtyFlag)<<8
	v = v[2:]
	for i := 0; i < n; i++ {
		id := schemas.Identifier{Type: ident.Type(v[0])}
		copy(id.Hash[:], v[1:33])
		p.ids = append(p.ids, id)
		v = v[33:]
	}
	for ; len(v) >= 4; v = v[4:] {
		p.auds = append(p.auds, uint32(v[0])|uint32(v[1])<<8|uint32(v[2])<<16|uint32(v[3])<<24)
	}
	return p
}

// get returns the profile stored for id, unpacked into scratch.
func (s *profiles) get(id string) (*profile, bool) {
	v, ok := s.t.get(id)
	if !ok {
		return nil, false
	}
	return s.load(v), true
}

// grows returns the state of profile id when it is known and has never
// been seen in or leaving aud, so that an event of aud adds an audience to
// it; nil otherwise. The profile is unpacked into scratch: read it before
// the next call.
func (s *profiles) grows(id string, aud uint32) *profile {
	var kb [profileKeyLen]byte
	s.digest(&kb, id)
	p, ok := s.get(string(kb[:]))
	if !ok {
		return nil
	}
	if known, _ := p.member(aud); known {
		return nil
	}
	return p
}

// leaveAll counts p out of every audience it is a member of.
func (s *profiles) leaveAll(p *profile) {
	s.countIn(p, -1)
	for i, a := range p.auds {
		if a&outBit == 0 {
			p.auds[i] |= outBit
		}
	}
}

// countIn counts p, with its identifiers, into (+1) or out of (-1) every
// audience it is a member of.
func (s *profiles) countIn(p *profile, delta int) {
	for _, a := range p.auds {
		if a&outBit == 0 {
			s.countAudience(p, a, delta)
		}
	}
}

// countAudience counts p, with its identifiers, into or out of aud.
func (s *profiles) countAudience(p *profile, aud uint32, delta int) {
	s.tally(aud, 0, delta)
	for _, id := range p.ids {
		s.tally(aud, id.Type, delta)
	}
}

// idChange emits o for identifier id in every audience p is a member of,
// and counts it there.
func (s *profiles) idChange(p *profile, id schemas.Identifier, o op, emit func(change)) {
	delta := 1
	if o == opRemove {
		delta = -1
	}
	for _, a := range p.auds {
		if a&outBit == 0 {
			s.tally(a, id.Type, delta)
		}
	}
	p.eachAudience(id, o, emit)
}

// install stores p as the state of profile id, not dirty (a restore).
func (s *profiles) install(id string, p *profile) {
	s.t.set(id, s.pack(p, false))
}

// remove drops the state of profile id, if any, counting it out of its
// audiences.
func (s *profiles) remove(id string) {
	if old, ok := s.get(id); ok {
		s.leaveAll(old)
		s.t.del(id)
	}
}

// clear drops every profile, counting them out of their audiences.
func (s *profiles) clear() {
	s.t.each(func(_, v []byte) {
		s.leaveAll(s.load(v))
	})
	s.t.reset()
	s.dirty = s.dirty[:0]
}

// apply folds ev into the profile's state and calls emit for every list
// change it implies. It reports whether the state changed.
func (s *profiles) apply(ev *schemas.Event, aud uint32, emit func(change)) bool {
	var kb [profileKeyLen]byte
	s.digest(&kb, ev.Profile)
	key := string(kb[:]) // on the stack: the table and the dirty list copy it
	j, v := s.t.ref(key)
	known := j >= 0
	listed := known && v[1]&dirtyFlag != 0
	p := s.load(v)
	if ev.Kind == schemas.KindForget {
		if !known {
			return false
		}
		p.each(opRemove, emit)
		s.leaveAll(p)
		s.t.del(key)
		if s.track && !listed {
			s.dirty = append(s.dirty, strings.Clone(key))
		}
		return true
	}
	changed := s.update(p, ev, aud, emit) || !known
	if changed {
		s.t.setAt(j, key, s.pack(p, s.track))
		if s.track && !listed {
			s.dirty = append(s.dirty, strings.Clone(key))
		}
	}
	return changed
}

// takeDirty calls f for every profile changed since the last call, with
// its state (nil: removed), and clears the list. f may not modify s.
func (s *profiles) takeDirty(f func(id string, p *profile)) {
	for _, id := range s.dirty {
		j, v := s.t.ref(id)
		switch {
		case j < 0:
			f(id, nil)
		case v[1]&dirtyFlag != 0:
			v[1] &^= dirtyFlag // in place: the record is the table's
			f(id, s.load(v))
		}
		// Otherwise listed twice (removed, then added again): done.
	}
	clear(s.dirty)
	s.dirty = s.dirty[:0]
}

// update folds an identify or membership event into p.
func (s *profiles) update(p *profile, ev *schemas.Event, aud uint32, emit func(change)) bool {
	changed := false
	if ev.NoConsent {
		p.each(opRemove, emit)
		s.leaveAll(p)
		changed = true
	}
	if ev.Kind == schemas.KindIdentify && ev.Replace {
		changed = s.replace(p, ev.Identifiers, emit) || changed
	} else {
		for _, id := range ev.Identifiers {
			changed = s.add(p, id, emit) || changed
		}
	}
	for _, id := range ev.Drop {
		if p.remove(id) {
			s.idChange(p, id, opRemove, emit)
			changed = true
		}
	}
	if ev.Kind != schemas.KindMembership || ev.NoConsent && ev.Member {
		return changed
	}
	known, in := p.member(aud)
	switch {
	case ev.Member && !in:
		p.setMember(aud, true)
		s.countAudience(p, aud, 1)
		for _, id := range p.ids {
			emit(change{aud: aud, typ: id.Type, hash: id.Hash, op: opAdd, vouched: true})
		}
		return true
	case !ev.Member && in:
		p.setMember(aud, false)
		s.countAudience(p, aud, -1)
		for _, id := range p.ids {
			emit(change{aud: aud, typ: id.Type, hash: id.Hash, op: opRemove, vouched: true})
		}
		return true
	case !ev.Member && !known:
		// An exit pinsync never saw enter: the list may be older than the
		// state, so the identifiers the event carries are removed.
		p.setMember(aud, false)
		for _, id := range ev.Identifiers {
			emit(change{aud: aud, typ: id.Type, hash: id.Hash, op: opRemove})
		}
		for _, id := range ev.Drop {
			emit(change{aud: aud, typ: id.Type, hash: id.Hash, op: opRemove})
		}
		return true
	}
	return changed
}

// add gives p the identifier id (if new), adds it to p's audiences, and
// drops the least recently seen identifier of its type beyond the bound.
func (s *profiles) add(p *profile, id schemas.Identifier, emit func(change)) bool {
	for i, x := range p.ids {
		if x == id {
			// Seen again: it becomes the newest of its type.
			if i == len(p.ids)-1 {
				return false
			}
			copy(p.ids[i:], p.ids[i+1:])
			p.ids[len(p.ids)-1] = id
			return true
		}
	}
	p.ids = append(p.ids, id)
	s.idChange(p, id, opAdd, emit)
	n := 0
	for _, x := range p.ids {
		if x.Type == id.Type {
			n++
		}
	}
	if n > s.maxPerType {
		for i, x := range p.ids {
			if x.Type == id.Type {
				p.ids = append(p.ids[:i], p.ids[i+1:]...)
				s.idChange(p, x, opRemove, emit)
				break
			}
		}
	}
	return true
}

// replace makes set the whole identifier set of p (bounded per type,
// keeping the last values of each type).
func (s *profiles) replace(p *profile, set []schemas.Identifier, emit func(change)) bool {
	var count [ident.NumTypes + 1]int
	keep := make([]schemas.Identifier, 0, len(set))
	for i := len(set) - 1; i >= 0; i-- {
		id := set[i]
		if !id.Type.Valid() || count[id.Type] >= s.maxPerType || contains(keep, id) {
			continue
		}
		count[id.Type]++
		keep = append(keep, id)
	}
	for i, j := 0, len(keep)-1; i < j; i, j = i+1, j-1 {
		keep[i], keep[j] = keep[j], keep[i]
	}
	changed := false
	for _, old := range p.ids {
		if !contains(keep, old) {
			s.idChange(p, old, opRemove, emit)
			changed = true
		}
	}
	for _, id := range keep {
		if !p.has(id) {
			s.idChange(p, id, opAdd, emit)
			changed = true
		}
	}
	p.ids = keep
	return changed
}

func contains(ids []schemas.Identifier, id schemas.Identifier) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// eachAudience emits o for id in every audience p is a member of.
func (p *profile) eachAudience(id schemas.Identifier, o op, emit func(change)) {
	for _, a := range p.auds {
		if a&outBit == 0 {
			emit(change{aud: a, typ: id.Type, hash: id.Hash, op: o, vouched: true})
		}
	}
}

// each emits o for every identifier in every audience p is a member of.
func (p *profile) each(o op, emit func(change)) {
	for _, id := range p.ids {
		p.eachAudience(id, o, emit)
	}
}
