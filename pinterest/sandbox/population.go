package sandbox

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"strings"
)

// User is one Pinterest user of the sandbox's population, known by one
// identifier as a customer-data platform holds it: in any case, perhaps
// with spaces around it. A record of a customer list matches a user when
// it is the hash Pinterest derives from that identifier.
type User struct {
	// Type is "email", "idfa" or "maid" (an Android advertising id).
	Type string
	// ID is the plaintext identifier.
	ID string
}

// The user types, as population files spell them, and the customer-list
// types their records go to.
var userListTypes = map[string]string{"email": "EMAIL", "idfa": "IDFA", "maid": "MAID"}

// population is who Pinterest knows: for each list type, the hashes under
// which its users are matched. It is built once and never changed.
type population map[string]map[digest]struct{}

// newPopulation hashes every user as Pinterest would.
func newPopulation(users []User) (population, error) {
	p := population{}
	for i, u := range users {
		lt, d, err := pinterestKey(u)
		if err != nil {
			return nil, fmt.Errorf("sandbox: Population[%d]: %w", i, err)
		}
		if p[lt] == nil {
			p[lt] = map[digest]struct{}{}
		}
		p[lt][d] = struct{}{}
	}
	return p, nil
}

// matches reports whether a record of a list of type listType is the hash
// of one of the population's users of that type.
func (p population) matches(listType string, d digest) bool {
	_, ok := p[listType][d]
	return ok
}

// sizes counts the population's distinct users by list type.
func (p population) sizes() map[string]int {
	out := make(map[string]int, len(p))
	for lt, set := range p {
		out[lt] = len(set)
	}
	return out
}

// pinterestKey is the hash under which Pinterest matches a user, derived
// from Pinterest's published rules alone (and deliberately not from
// pinsync's own normalisation, so that a mistake there cannot hide here):
//
//   - email: trimmed, lowercased (the API reference: "Emails must be
//     lowercase");
//   - idfa: trimmed, UPPERCASED (Pinterest's help centre: "IDFAs (iOS) must
//     be uppercase");
//   - maid: trimmed, lowercased, 8-4-4-4-12 ("AAIDs (Android ad IDs) must be
//     lowercase. MAIDs (AAIDs) should follow the format 8-4-4-4-12");
//
// then SHA-256.
func pinterestKey(u User) (listType string, d digest, err error) {
	lt, ok := userListTypes[strings.ToLower(strings.TrimSpace(u.Type))]
	if !ok {
		return "", d, fmt.Errorf("unknown identifier type %q (want email, idfa or maid)", u.Type)
	}
	id := strings.TrimSpace(u.ID)
	switch lt {
	case "EMAIL":
		id = strings.ToLower(id)
		if !strings.Contains(id, "@") {
			return "", d, errors.New("not an email address")
		}
	case "IDFA":
		id = strings.ToUpper(id)
	case "MAID":
		id = strings.ToLower(id)
	}
	if lt != "EMAIL" && !isDeviceID(id) {
		return "", d, errors.New("not an 8-4-4-4-12 device id")
	}
	return lt, sha256.Sum256([]byte(id)), nil
}

// isDeviceID reports whether s has the 8-4-4-4-12 shape of hex groups.
func isDeviceID(s string) bool {
	groups := strings.Split(s, "-")
	if len(groups) != 5 {
		return false
	}
	for i, g := range groups {
		if len(g) != [...]int{8, 4, 4, 4, 12}[i] || strings.Trim(g, "0123456789abcdefABCDEF") != "" {
			return false
		}
	}
	return true
}

// maxPopulationLine bounds one line of a population file.
const maxPopulationLine = 4096

// ReadPopulation reads a population file: one user a line, its type
// (email, idfa or maid), a tab, and its identifier as a customer-data
// platform holds it. Blank lines and lines starting with '#' are skipped.
// An error names the line; it never quotes the identifier.
func ReadPopulation(r io.Reader) ([]User, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxPopulationLine)
	var users []User
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		typ, id, ok := strings.Cut(text, "\t")
		if !ok {
			return nil, fmt.Errorf("population line %d: want TYPE<TAB>IDENTIFIER", line)
		}
		u := User{Type: typ, ID: id}
		if _, _, err := pinterestKey(u); err != nil {
			return nil, fmt.Errorf("population line %d: %w", line, err)
		}
		users = append(users, u)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("population: %w", err)
	}
	return users, nil
}
