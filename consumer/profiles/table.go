package profiles

import (
	"encoding/binary"
	"hash/maphash"
)

// table is a hash table from string keys to byte values specialised for
// the profile state: each entry is one byte slice (one allocation) holding
// key and value together, and the index is a flat slice of integers, so a
// million entries cost their records plus about 43 bytes each. A value
// replaced by one of the same length is overwritten in place.
//
// recs holds the entries, each as uvarint(len(key)) + key + value, in no
// particular order (a delete moves the last record into the hole). slots is
// the index: a power-of-two number of slots probed linearly, each 0 (empty)
// or (32-bit hash tag << 32) | (record index + 1). An entry's home slot is
// its tag's low bits, so growing and backward-shift deletion need no
// rehashing of keys. The load is kept at most 3/4.
//
// The zero table is empty and ready to use. It is not safe for concurrent
// use.
type table struct {
	seed  maphash.Seed
	recs  [][]byte
	slots []uint64
}

// tableMinSlots is the number of slots of a table's first index.
const tableMinSlots = 8

// tableMaxSlots bounds the index: home slots come from a 32-bit tag.
const tableMaxSlots = 1 << 32

// tag is key's 32-bit hash tag under t's seed.
func (t *table) tag(key string) uint32 {
	return uint32(maphash.String(t.seed, key) >> 32)
}

// recKey returns the key of record r and the offset of its value.
func recKey(r []byte) (key []byte, valueAt int) {
	var n uint64
	k := 0
	for shift := 0; ; shift += 7 {
		c := r[k]
		k++
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			break
		}
	}
	end := k + int(n)
	return r[k:end], end
}

// find returns the slot holding key and the index of its record, or ok
// false when key is absent.
func (t *table) find(key string) (slot, rec int, ok bool) {
	if len(t.recs) == 0 {
		return 0, 0, false
	}
	tag := t.tag(key)
	mask := uint64(len(t.slots) - 1)
	for i := uint64(tag) & mask; ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return 0, 0, false
		}
		if uint32(s>>32) != tag {
			continue
		}
		j := int(uint32(s)) - 1
		if k, _ := recKey(t.recs[j]); string(k) == key {
			return int(i), j, true
		}
	}
}

// get returns the value stored for key: part of its record, not a copy,
// valid until the table is next modified.
func (t *table) get(key string) (value []byte, ok bool) {
	_, j, ok := t.find(key)
	if !ok {
		return nil, false
	}
	return t.value(j), true
}

// ref returns the index of key's record (-1 when absent) and its value
// (see get), for a later setAt.
func (t *table) ref(key string) (j int, value []byte) {
	_, j, ok := t.find(key)
	if !ok {
		return -1, nil
	}
	return j, t.value(j)
}

// value returns the value of record j.
func (t *table) value(j int) []byte {
	r := t.recs[j]
	_, at := recKey(r)
	return r[at:len(r):len(r)]
}

// set stores a copy of value for key, replacing any value it had.
func (t *table) set(key string, value []byte) {
	_, j, ok := t.find(key)
	if !ok {
		j = -1
	}
	t.setAt(j, key, value)
}

// setAt stores a copy of value for key, whose record is j (from ref, with
// no modification since; -1: absent). A value of the same length as the
// old one is overwritten in place; otherwise the record is rebuilt in one
// allocation.
func (t *table) setAt(j int, key string, value []byte) {
	if j >= 0 {
		r := t.recs[j]
		if _, at := recKey(r); len(r)-at == len(value) {
			copy(r[at:], value)
		} else {
			t.recs[j] = record(key, value)
		}
		return
	}
	if t.slots == nil {
		t.seed = maphash.MakeSeed()
		t.slots = make([]uint64, tableMinSlots)
	}
	if (len(t.recs)+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	t.recs = append(t.recs, record(key, value))
	tag := t.tag(key)
	t.place(uint64(tag)<<32 | uint64(len(t.recs)))
}

// record builds uvarint(len(key)) + key + value in one allocation of
// exactly that size.
func record(key string, value []byte) []byte {
	var n [binary.MaxVarintLen64]byte
	l := binary.PutUvarint(n[:], uint64(len(key)))
	b := make([]byte, 0, l+len(key)+len(value))
	b = append(b, n[:l]...)
	b = append(b, key...)
	return append(b, value...)
}

// place puts slot value s into the first empty slot from its home.
func (t *table) place(s uint64) {
	mask := uint64(len(t.slots) - 1)
	i := (s >> 32) & mask
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

// grow doubles the index and reinserts every slot by its tag.
func (t *table) grow() {
	n := 2 * len(t.slots)
	if uint64(n) > tableMaxSlots {
		panic("consumer: table too large")
	}
	old := t.slots
	t.slots = make([]uint64, n)
	for _, s := range old {
		if s != 0 {
			t.place(s)
		}
	}
}

// del removes key, reporting whether it was present.
func (t *table) del(key string) bool {
	i, j, ok := t.find(key)
	if !ok {
		return false
	}
	t.unslot(uint64(i))
	last := len(t.recs) - 1
	if j != last {
		// Move the last record into the hole and repoint its slot.
		k, _ := recKey(t.recs[last])
		mask := uint64(len(t.slots) - 1)
		want := uint64(last + 1)
		p := uint64(t.tag(string(k))) & mask
		for uint64(uint32(t.slots[p])) != want {
			p = (p + 1) & mask
		}
		t.slots[p] = t.slots[p]&^(1<<32-1) | uint64(j+1)
		t.recs[j] = t.recs[last]
	}
	t.recs[last] = nil
	t.recs = t.recs[:last]
	return true
}

// unslot empties slot i by backward-shift deletion: every following slot
// of the probe run that may move back toward its home fills the hole.
func (t *table) unslot(i uint64) {
	mask := uint64(len(t.slots) - 1)
	for j := (i + 1) & mask; t.slots[j] != 0; j = (j + 1) & mask {
		home := (t.slots[j] >> 32) & mask
		// The entry at j may fill the hole at i when its home is not in
		// the cyclic range (i, j].
		if (j-home)&mask >= (j-i)&mask {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = 0
}

// len returns the number of entries.
func (t *table) len() int { return len(t.recs) }

// each calls f with every entry (parts of the records, not copies), in no
// particular order. f must not modify t.
func (t *table) each(f func(key, value []byte)) {
	for _, r := range t.recs {
		k, at := recKey(r)
		f(k, r[at:])
	}
}

// reset drops every entry and releases the table's memory.
func (t *table) reset() {
	t.recs, t.slots = nil, nil
}
