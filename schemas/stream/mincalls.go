package stream

import (
	"time"

	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
)

// MinCalls is the number of list writes (each carrying up to max records)
// an omniscient uploader with the oracle's semantics needs to bring empty
// lists to their final contents, and the records they carry. Per list it
// keeps the net change against what it already uploaded (a record that
// goes back to its uploaded state leaves the pending set), uploads a side
// (adds or removes) when it holds max records, and everything pending when
// the oldest pending change has waited flush by the stream's clock (the
// records' event times: the stream is read as it happens); the rest at the
// end. With flush 0 it reads the stream as a backlog: nothing waits on the
// clock. It also returns the final lists.
func MinCalls(recs []Record, dec *schemas.Decoder, max int, flush time.Duration) (calls, records int, final map[ListKey]Set) {
	type listState struct {
		uploaded Set
		pending  map[ident.Hash]bool // true: add
		adds     int
		since    time.Time // arrival of the oldest pending change
	}
	lists := map[ListKey]*listState{}
	get := func(k ListKey) *listState {
		l := lists[k]
		if l == nil {
			l = &listState{uploaded: Set{}, pending: map[ident.Hash]bool{}}
			lists[k] = l
		}
		return l
	}
	flush1 := func(l *listState, add bool) {
		n := 0
		for h, a := range l.pending {
			if a != add {
				continue
			}
			if add {
				l.uploaded[h] = struct{}{}
				l.adds--
			} else {
				delete(l.uploaded, h)
			}
			delete(l.pending, h)
			n++
		}
		if n > 0 {
			calls += (n + max - 1) / max
			records += n
		}
	}
	var now time.Time
	change := func(k ListKey, h ident.Hash, in bool) {
		l := get(k)
		if len(l.pending) == 0 {
			l.since = now
		}
		_, up := l.uploaded[h]
		if old, ok := l.pending[h]; ok {
			if old {
				l.adds--
			}
			delete(l.pending, h)
		}
		if up == in {
			return
		}
		l.pending[h] = in
		if in {
			l.adds++
		}
		if l.adds >= max {
			flush1(l, true)
		} else if len(l.pending)-l.adds >= max {
			flush1(l, false)
		}
	}
	// One oracle per profile: its Expected is that profile's share of the
	// lists, so the difference around an event is the event's effect.
	profiles := map[string]*Oracle{}
	var ev schemas.Event
	for _, r := range recs {
		now = r.Timestamp
		if flush > 0 {
			for _, l := range lists {
				if len(l.pending) > 0 && !now.Before(l.since.Add(flush)) {
					flush1(l, true)
					flush1(l, false)
				}
			}
		}
		if dec.Decode(r.Key, r.Value, &ev) != nil {
			continue
		}
		o := profiles[ev.Profile]
		if o == nil {
			o = NewOracle(DefaultMaxIdentifiersPerType)
			profiles[ev.Profile] = o
		}
		before := o.Expected()
		o.Apply(&ev)
		after := o.Expected()
		for k, s := range before {
			for h := range s {
				if _, ok := after[k][h]; !ok {
					change(k, h, false)
				}
			}
		}
		for k, s := range after {
			for h := range s {
				if _, ok := before[k][h]; !ok {
					change(k, h, true)
				}
			}
		}
	}
	final = map[ListKey]Set{}
	for k, l := range lists {
		flush1(l, true)
		flush1(l, false)
		if len(l.uploaded) > 0 {
			final[k] = l.uploaded
		}
	}
	return calls, records, final
}
