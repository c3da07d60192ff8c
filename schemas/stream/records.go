package stream

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
)

// Writing one record: r.key holds the profile id, r.val the value.

func (r *run) setProfile(i int) {
	r.idx = uint64(i)
	r.key = appendProfileID(r.key[:0], r.cfg.ProfilePrefix, r.idx)
}

// membership sends profile i's entry to (member) or exit from audience a:
// one Segment event per identifier value, or one native record.
func (r *run) membership(i, a int, member bool) error {
	r.setProfile(i)
	p := &r.profiles[i]
	if r.native() {
		r.writeNative("membership", p, a, member)
		return r.send(true)
	}
	for e := range int(p.emails) {
		r.writeSegment(p, segment{aud: a, member: member, email: e, dev: -1})
		if err := r.send(false); err != nil {
			return err
		}
	}
	for d := range p.devices {
		if !p.devices[d].tracked {
			continue
		}
		s := segment{aud: a, member: member, email: -1, dev: d, idSync: r.rng.IntN(10) < 3}
		if r.rng.IntN(10) < 3 {
			s.email = 0
		}
		r.writeSegment(p, s)
		if err := r.send(false); err != nil {
			return err
		}
	}
	return nil
}

// newIdentifier announces a new email (e >= 0) or a newly tracked device
// (d >= 0) of profile i; Engage then re-sends most of the profile's
// audiences with the new value.
func (r *run) newIdentifier(i, e, d int) error {
	r.setProfile(i)
	p := &r.profiles[i]
	if r.native() {
		r.writeNative("identify", p, -1, false)
		if err := r.send(true); err != nil {
			return err
		}
	} else {
		r.writeSegment(p, segment{aud: -1, email: e, dev: d, identify: true})
		if err := r.send(false); err != nil {
			return err
		}
	}
	for a := range r.g.audiences {
		if !r.member(i, a) || r.rng.IntN(10) >= 7 {
			continue
		}
		r.writeSegment(p, segment{aud: a, member: true, email: e, dev: d})
		if err := r.send(false); err != nil {
			return err
		}
	}
	return nil
}

// identify sends a Segment identify of profile i (with device d when d >=
// 0, for example one whose tracking just changed), sometimes as a trait
// computation, or a native identify with the whole identifier set. With
// consent in play it is always Segment's, which carries the consent.
func (r *run) identify(i, d int) error {
	r.setProfile(i)
	p := &r.profiles[i]
	if r.cfg.ConsentCategory == "" && r.native() {
		r.writeNative("identify", p, -1, false)
		return r.send(true)
	}
	s := segment{aud: -1, identify: true, email: r.rng.IntN(int(p.emails)), dev: d}
	if d < 0 && len(p.devices) > 0 && r.rng.IntN(2) == 0 {
		s.dev = r.rng.IntN(len(p.devices))
	}
	s.trait = r.rng.IntN(10) < 3
	r.writeSegment(p, s)
	return r.send(false)
}

// forget sends a native privacy deletion of profile i.
func (r *run) forget(i int) error {
	r.setProfile(i)
	b := append(r.val[:0], `{"type":"forget","profile":`...)
	b = appendString(b, r.key)
	b = append(b, `,"timestamp":`...)
	b = appendTime(b, r.now)
	r.val = append(b, '}')
	return r.send(true)
}

func (r *run) native() bool {
	return r.cfg.NativeFraction > 0 && r.rng.Float64() < r.cfg.NativeFraction
}

// send emits r.val, sometimes preceded by a malformed record.
func (r *run) send(native bool) error {
	if r.cfg.MalformedFraction > 0 && r.rng.Float64() < r.cfg.MalformedFraction {
		r.writeMalformed()
		if err := r.out(r.bad, true, false); err != nil {
			return err
		}
	}
	return r.out(r.val, false, native)
}

func (r *run) out(v []byte, malformed, native bool) error {
	if r.stats.Records >= r.cfg.Events {
		return errStop
	}
	r.stats.Records++
	if malformed {
		r.stats.Malformed++
	}
	if native {
		r.stats.Native++
	}
	if err := r.emit(Record{Key: r.key, Value: v, Malformed: malformed, Timestamp: r.now}); err != nil {
		return err
	}
	if r.stats.Records >= r.cfg.Events {
		return errStop
	}
	return nil
}

// segment describes one Segment message.
type segment struct {
	identify bool // an identify call; audience events are track calls unless the audience is delivered as identify
	aud      int  // audience index, or -1
	member   bool
	email    int  // email ordinal, or -1
	dev      int  // device index in the profile, or -1
	idSync   bool // also carry the device id as ios_idfa / android_idfa (Engage ID Sync)
	trait    bool // a trait computation (identify without audience)
}

func (r *run) writeSegment(p *profile, s segment) {
	var aud *audience
	if s.aud >= 0 {
		aud = &r.g.audiences[s.aud]
		s.identify = aud.identify
	}
	b := r.val[:0]
	if s.identify {
		b = append(b, `{"type":"identify"`...)
	} else {
		b = append(b, `{"type":"track","event":`...)
		if s.member {
			b = appendString(b, r.cfg.EnteredEvent)
		} else {
			b = appendString(b, r.cfg.ExitedEvent)
		}
	}
	b = append(b, `,"messageId":"personas_`...)
	b = appendBase62(b, r.rng.Uint64(), 27)
	b = append(b, `","timestamp":`...)
	b = appendTime(b, r.now)
	b = append(b, `,"userId":`...)
	b = appendString(b, r.key)

	// An untracked device rides along on some events, so that its id is
	// dropped again and again.
	dev := s.dev
	if dev < 0 && len(p.devices) > 0 && r.rng.IntN(4) == 0 {
		if k := r.rng.IntN(len(p.devices)); !p.devices[k].tracked {
			dev = k
		}
	}

	if s.identify {
		b = append(b, `,"traits":{`...)
		first := true
		if s.email >= 0 {
			b = appendKey(b, "email")
			b = r.appendEmailValue(b, s.email)
			first = false
		}
		if aud != nil {
			if !first {
				b = append(b, ',')
			}
			b = appendString(b, aud.key)
			b = append(b, ':')
			b = appendBool(b, s.member)
			first = false
		}
		if s.trait {
			if !first {
				b = append(b, ',')
			}
			b = append(b, `"lifetime_value":`...)
			b = appendCents(b, r.rng.IntN(500_00))
			first = false
		}
		if s.idSync && s.dev >= 0 {
			if !first {
				b = append(b, ',')
			}
			b = r.appendIDSync(b, p.devices[s.dev])
		}
		b = append(b, '}')
	} else {
		b = append(b, `,"properties":{"audience_key":`...)
		b = appendString(b, aud.key)
		b = append(b, ',')
		b = appendString(b, aud.key)
		b = append(b, ':')
		b = appendBool(b, s.member)
		if s.idSync && s.dev >= 0 {
			b = append(b, ',')
			b = r.appendIDSync(b, p.devices[s.dev])
		}
		b = append(b, '}')
	}

	b = append(b, `,"context":{`...)
	first := true
	if !s.identify && s.email >= 0 {
		b = append(b, `"traits":{"email":`...)
		b = r.appendEmailValue(b, s.email)
		b = append(b, '}')
		first = false
	}
	if dev >= 0 {
		if !first {
			b = append(b, ',')
		}
		b = r.appendDevice(b, p.devices[dev])
		first = false
	}
	if aud != nil || s.trait {
		if !first {
			b = append(b, ',')
		}
		if aud != nil {
			b = append(b, aud.personas...)
		} else {
			b = append(b, `"personas":{"computation_class":"trait","computation_id":"trt_`...)
			b = appendBase62(b, mix(r.cfg.Seed^0x7a17), 27)
			b = append(b, `","computation_key":"lifetime_value","namespace":"`...)
			b = append(b, r.g.spaceID...)
			b = append(b, `","space_id":"`...)
			b = append(b, r.g.spaceID...)
			b = append(b, `"}`...)
		}
		first = false
	}
	if r.cfg.ConsentCategory != "" {
		if !first {
			b = append(b, ',')
		}
		b = append(b, `"consent":{"categoryPreferences":{`...)
		b = appendString(b, r.cfg.ConsentCategory)
		b = append(b, ':')
		b = appendBool(b, !p.noConsent)
		b = append(b, `}}`...)
	}
	b = append(b, '}')
	if s.identify && aud != nil {
		b = append(b, `,"integrations":{"All":false,"Pinterest Audiences":true}`...)
	}
	r.val = append(b, '}')
}

// appendEmailValue appends email e of the current profile as a JSON string,
// sometimes written the way people type addresses: capitals, spaces.
func (r *run) appendEmailValue(b []byte, e int) []byte {
	s := r.g.ids.appendEmail(r.scratch[:0], r.idx, e)
	if k := r.rng.IntN(100); k < 12 {
		switch k % 4 {
		case 0: // Jane.Doe12@Example.com
			up := true
			for j, c := range s {
				if up && 'a' <= c && c <= 'z' {
					s[j] = c - 'a' + 'A'
				}
				up = c == '.' || c == '@'
			}
		case 1: // all capitals
			for j, c := range s {
				if 'a' <= c && c <= 'z' {
					s[j] = c - 'a' + 'A'
				}
			}
		case 2: // pasted with spaces around
			s = append(s, ' ', ' ')
			s = append([]byte{' '}, s...)
		case 3: // a trailing tab or newline from a form
			s = append(s, "\t\n"[r.rng.IntN(2)])
		}
	}
	r.scratch = s[:0]
	if r.cfg.PreHashed == PreHashPinterest {
		b = append(b, '"')
		b = appendSHA256(b, bytes.ToLower(bytes.TrimSpace(s)))
		return append(b, '"')
	}
	return appendString(b, s)
}

func (r *run) appendDevice(b []byte, d device) []byte {
	b = append(b, `"device":{"type":`...)
	if d.android {
		b = append(b, `"android"`...)
	} else {
		b = append(b, `"ios"`...)
	}
	b = append(b, `,"advertisingId":"`...)
	if d.limited {
		b = append(b, "00000000-0000-0000-0000-000000000000"...)
	} else {
		b = r.appendDeviceValue(b, d, !d.android != (r.rng.IntN(20) == 0))
	}
	b = append(b, `","adTrackingEnabled":`...)
	b = appendBool(b, d.tracked)
	return append(b, '}')
}

func (r *run) appendIDSync(b []byte, d device) []byte {
	if d.android {
		b = append(b, `"android_idfa":"`...)
	} else {
		b = append(b, `"ios_idfa":"`...)
	}
	b = r.appendDeviceValue(b, d, !d.android)
	return append(b, '"')
}

// appendDeviceValue appends device d's advertising id (in upper case when
// upper), or its hash when the platform sends device ids hashed.
func (r *run) appendDeviceValue(b []byte, d device, upper bool) []byte {
	id := r.g.ids.appendDeviceID(r.scratch[:0], r.idx, int(d.n), upper)
	r.scratch = id[:0]
	switch {
	case r.cfg.PreHashed == PreHashPinterest && d.android:
		return appendSHA256(b, bytes.ToLower(id))
	case r.cfg.PreHashed == PreHashPinterest:
		return appendSHA256(b, bytes.ToUpper(id))
	case r.cfg.PreHashed == PreHashIDFALowercase && !d.android:
		return appendSHA256(b, bytes.ToLower(id))
	}
	return append(b, id...)
}

// appendSHA256 appends the lowercase hex SHA-256 of v.
func appendSHA256(b, v []byte) []byte {
	sum := sha256.Sum256(v)
	return hex.AppendEncode(b, sum[:])
}

// appendCents appends c/100 with two decimals.
func appendCents(b []byte, c int) []byte {
	b = appendInt(b, c/100)
	b = append(b, '.', byte('0'+c/10%10), byte('0'+c%10))
	return b
}

func appendInt(b []byte, v int) []byte {
	if v >= 10 {
		b = appendInt(b, v/10)
	}
	return append(b, byte('0'+v%10))
}

// writeNative writes a native identify (the profile's whole identifier
// set) or membership record into r.val.
func (r *run) writeNative(kind string, p *profile, a int, member bool) {
	b := append(r.val[:0], `{"type":"`...)
	b = append(b, kind...)
	b = append(b, `","profile":`...)
	b = appendString(b, r.key)
	if a >= 0 {
		b = append(b, `,"audience":`...)
		b = appendString(b, r.g.audiences[a].key)
		b = append(b, `,"member":`...)
		b = appendBool(b, member)
	}
	b = append(b, `,"identifiers":{"email":[`...)
	for e := range int(p.emails) {
		if e > 0 {
			b = append(b, ',')
		}
		b = r.appendEmailValue(b, e)
	}
	b = append(b, ']')
	for _, android := range [2]bool{false, true} {
		n := 0
		for _, d := range p.devices {
			if !d.tracked || d.android != android {
				continue
			}
			if n == 0 {
				if android {
					b = append(b, `,"maid":[`...)
				} else {
					b = append(b, `,"idfa":[`...)
				}
			} else {
				b = append(b, ',')
			}
			n++
			b = append(b, '"')
			b = r.appendDeviceValue(b, d, !android)
			b = append(b, '"')
		}
		if n > 0 {
			b = append(b, ']')
		}
	}
	b = append(b, `},"timestamp":`...)
	b = appendTime(b, r.now)
	r.val = append(b, '}')
}

// writeMalformed writes into r.bad a record a correct decoder must reject,
// usually derived from the record about to be sent (r.val).
func (r *run) writeMalformed() {
	b := r.bad[:0]
	kinds := 5
	if r.cfg.NativeFraction > 0 {
		kinds++
	}
	switch r.rng.IntN(kinds) {
	case 0: // cut short: no proper prefix of an object is JSON
		b = append(b, r.val[:1+r.rng.IntN(len(r.val)-1)]...)
	case 1: // not JSON at all
		b = append(b, "\x00\x01\x02 not json \xff"...)
	case 2: // JSON, but not an object
		b = append(b, `["identify",`...)
		b = appendString(b, r.key)
		b = append(b, ']')
	case 3: // an audience event that does not say which audience
		b = append(b, `{"type":"track","event":`...)
		b = appendString(b, r.cfg.EnteredEvent)
		b = append(b, `,"messageId":"personas_`...)
		b = appendBase62(b, r.rng.Uint64(), 27)
		b = append(b, `","timestamp":`...)
		b = appendTime(b, r.now)
		b = append(b, `,"userId":`...)
		b = appendString(b, r.key)
		b = append(b, `,"properties":{},"context":{"traits":{"email":`...)
		b = r.g.ids.appendEmail(append(b, '"'), r.idx, 0)
		b = append(b, `"}}}`...)
	case 4: // an SDK that sends the tracking flag as a string
		a := &r.g.audiences[r.rng.IntN(len(r.g.audiences))]
		b = append(b, `{"type":"track","event":`...)
		b = appendString(b, r.cfg.ExitedEvent)
		b = append(b, `,"userId":`...)
		b = appendString(b, r.key)
		b = append(b, `,"properties":{"audience_key":`...)
		b = appendString(b, a.key)
		b = append(b, ',')
		b = appendString(b, a.key)
		b = append(b, `:false},"context":{"device":{"type":"android","advertisingId":"`...)
		b = r.g.ids.appendDeviceID(b, r.idx, 0, false)
		b = append(b, `","adTrackingEnabled":"yes"},`...)
		b = append(b, a.personas...)
		b = append(b, `}}`...)
	case 5: // a native membership that does not say in or out
		b = append(b, `{"type":"membership","profile":`...)
		b = appendString(b, r.key)
		b = append(b, `,"audience":`...)
		b = appendString(b, r.g.audiences[r.rng.IntN(len(r.g.audiences))].key)
		b = append(b, `,"identifiers":{"email":["`...)
		b = r.g.ids.appendEmail(b, r.idx, 0)
		b = append(b, `"]}}`...)
	}
	r.bad = b
}
