package bench

import (
	"github.com/pinsync/pinsync/schemas"
	"github.com/pinsync/pinsync/schemas/ident"
	"github.com/pinsync/pinsync/schemas/stream"
)

// idealCalls is what an omniscient uploader with pinsync's per-request
// maximum and the oracle's semantics needs to bring empty lists to their
// final contents when it reads the stream as a backlog: per list it keeps
// the net change against what it already uploaded (a record that goes back
// to its uploaded state leaves the pending set), uploads a side (adds or
// removes) only when it holds max records, and the rest once at the end.
// It returns the calls, the records they carry and the final lists.
func idealCalls(recs []stream.Record, dec *schemas.Decoder, max int) (calls, records int, final map[stream.ListKey]stream.Set) {
	type listState struct {
		uploaded stream.Set
		pending  map[ident.Hash]bool // true: add
		adds     int
	}
	lists := map[stream.ListKey]*listState{}
	get := func(k stream.ListKey) *listState {
		l := lists[k]
		if l == nil {
			l = &listState{uploaded: stream.Set{}, pending: map[ident.Hash]bool{}}
			lists[k] = l
		}
		return l
	}
	flush := func(l *listState, add bool) {
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
	change := func(k stream.ListKey, h ident.Hash, in bool) {
		l := get(k)
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
			flush(l, true)
		} else if len(l.pending)-l.adds >= max {
			flush(l, false)
		}
	}
	// One oracle per profile: its Expected is that profile's share of the
	// lists, so the difference around an event is the event's effect.
	profiles := map[string]*stream.Oracle{}
	var ev schemas.Event
	for _, r := range recs {
		if dec.Decode(r.Key, r.Value, &ev) != nil {
			continue
		}
		o := profiles[ev.Profile]
		if o == nil {
			o = stream.NewOracle(stream.DefaultMaxIdentifiersPerType)
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
	final = map[stream.ListKey]stream.Set{}
	for k, l := range lists {
		flush(l, true)
		flush(l, false)
		if len(l.uploaded) > 0 {
			final[k] = l.uploaded
		}
	}
	return calls, records, final
}
