package stream

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strings"
)

// DefaultPopulationShare is the share of a stream's profiles that are
// Pinterest users in Population's default.
const DefaultPopulationShare = 0.7

// User is one Pinterest user: one identifier of a generated profile, as a
// customer-data platform holds it (in any case, sometimes with spaces
// around it). Type is "email", "idfa" or "maid".
type User struct {
	Type, ID string
}

// Population returns the Pinterest users among the generator's profiles: a
// share of the profiles, chosen by the Config's seed, each with every
// identifier it can ever have (its possible emails, and its possible
// devices' advertising ids, IDFAs for iOS devices and Android ids for the
// others). A customer list synced from the stream then matches about share
// of its records when its identifiers are hashed as Pinterest hashes them,
// and none of a type hashed otherwise. share is in [0, 1].
//
// The identifiers are plaintext, as the customer-data platform sends them;
// the generator does not hash them, so that whoever matches them (the
// Pinterest sandbox) applies Pinterest's rules itself.
func (g *Generator) Population(share float64) []User {
	if !(share > 0) {
		return nil
	}
	limit := uint64(math.MaxUint64)
	if share < 1 {
		limit = uint64(share * (1 << 63) * 2)
	}
	var out []User
	var b []byte
	for i := 0; i < g.cfg.Profiles; i++ {
		idx := uint64(i)
		if mix(idx^g.cfg.Seed<<1^0x9091a7e) >= limit {
			continue
		}
		v := mix(idx ^ 0xca5e)
		for n := 0; n < g.cfg.EmailsPerProfile; n++ {
			b = g.ids.appendEmail(b[:0], idx, n)
			out = append(out, User{Type: "email", ID: heldAs(string(b), v>>uint(4*n), false)})
		}
		for n := 0; n < g.cfg.DevicesPerProfile; n++ {
			android := g.ids.android(idx, n)
			b = g.ids.appendDeviceID(b[:0], idx, n, !android)
			typ := "idfa"
			if android {
				typ = "maid"
			}
			out = append(out, User{Type: typ, ID: heldAs(string(b), v>>uint(32+4*n), true)})
		}
	}
	return out
}

// heldAs writes an identifier the way a customer-data platform may hold
// it, chosen by the low bits of v: mostly as is, sometimes re-cased, or
// with spaces around it.
func heldAs(id string, v uint64, device bool) string {
	switch v % 8 {
	case 0:
		if device { // a device id in the other case
			if strings.ToUpper(id) == id {
				return strings.ToLower(id)
			}
			return strings.ToUpper(id)
		}
		return strings.ToUpper(id)
	case 1:
		return " " + id + "\t"
	}
	return id
}

// WritePopulation writes users one a line, type, a tab and the identifier,
// as pinsync sandbox --population reads them.
func WritePopulation(w io.Writer, users []User) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "# %d Pinterest users: type<TAB>identifier as a customer-data platform holds it\n", len(users))
	for _, u := range users {
		bw.WriteString(u.Type)
		bw.WriteByte('\t')
		bw.WriteString(u.ID)
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
