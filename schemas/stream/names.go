package stream

import (
	"strconv"
)

// audienceNames are the keys of the first audiences, as a retailer's
// Engage space might name them.
var audienceNames = [...]string{
	"first_time_shoppers",
	"cart_abandoners",
	"high_value_customers",
	"lapsed_buyers",
	"newsletter_subscribers",
	"loyalty_members",
	"recent_browsers",
	"discount_seekers",
	"repeat_purchasers",
	"app_installers",
	"churn_risk",
	"vip_customers",
}

var (
	audienceAdjectives = [...]string{
		"frequent", "recently_active", "winback", "engaged", "new", "high_intent", "seasonal",
		"mobile", "weekend", "premium", "returning", "dormant",
	}
	audienceNouns = [...]string{
		"shoppers", "browsers", "buyers", "subscribers", "visitors", "readers",
		"gifters", "members", "bargain_hunters", "reviewers",
	}
)

// audienceName returns the key (without prefix) of audience i: a
// hand-picked name for the first ones, then adjective_noun, then
// adjective_noun_N, so that every i has a distinct name.
func audienceName(i int) string {
	if i < len(audienceNames) {
		return audienceNames[i]
	}
	j := i - len(audienceNames)
	combos := len(audienceAdjectives) * len(audienceNouns)
	name := audienceAdjectives[j%len(audienceAdjectives)] + "_" + audienceNouns[(j/len(audienceAdjectives))%len(audienceNouns)]
	if round := j / combos; round > 0 {
		name += "_" + strconv.Itoa(round+1)
	}
	return name
}

// Names of invented people; a few are not ASCII so that normalisation meets
// Unicode. None contains a digit, '.', '_' or '+': email local parts stay
// unambiguous (see email).
var (
	firstNames = [...]string{
		"jane", "sam", "alex", "maria", "li", "omar", "priya", "lucas", "emma", "noah",
		"chloé", "zoë", "søren", "josé", "ana", "kenji", "fatima", "ivan", "nina", "tom",
		"grace", "hugo", "leila", "mateo", "sara", "yusuf", "mia", "arjun", "elena", "felix",
	}
	lastNames = [...]string{
		"doe", "roe", "smith", "garcia", "nguyen", "kowalski", "okafor", "rossi", "silva", "tanaka",
		"müller", "dubois", "haddad", "jensen", "patel", "kim", "novak", "moreau", "costa", "berg",
	}
	// Domains reserved for documentation (RFC 2606): nobody's real address.
	emailDomains = [...]string{
		"example.com", "example.org", "example.net", "mail.example.com", "shop.example", "inbox.example.org",
	}
)

// mix is SplitMix64's finaliser: a fixed bijection used to derive a
// profile's names and device ids from its index alone.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// identities derives a profile's identifiers from its id: its index, and
// for a ProfilePrefix other than the default a tag and salt derived from
// the prefix, so that streams with different prefixes do not share
// identifiers either.
type identities struct {
	tag  string // "" for the default prefix
	salt uint64
}

func newIdentities(profilePrefix string) identities {
	if profilePrefix == defaultProfilePrefix {
		return identities{}
	}
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(profilePrefix); i++ {
		h = (h ^ uint64(profilePrefix[i])) * 1099511628211
	}
	return identities{tag: string(appendBase62(nil, h, 6)), salt: mix(h)}
}

// appendEmail appends the canonical (lower-case) address number n of
// profile idx. The local part encodes (idx, n) unambiguously — n == 0:
// first.last<idx>; n > 0: first<idx>_<n>; then +tag when there is one — so
// no two profiles, and no two addresses of one profile, normalise to the
// same value.
func (ids identities) appendEmail(b []byte, idx uint64, n int) []byte {
	h := mix(idx)
	first := firstNames[h%uint64(len(firstNames))]
	last := lastNames[(h>>16)%uint64(len(lastNames))]
	b = append(b, first...)
	if n == 0 {
		b = append(b, '.')
		b = append(b, last...)
		b = strconv.AppendUint(b, idx, 10)
	} else {
		b = strconv.AppendUint(b, idx, 10)
		b = append(b, '_')
		b = strconv.AppendInt(b, int64(n), 10)
	}
	if ids.tag != "" {
		b = append(b, '+')
		b = append(b, ids.tag...)
	}
	b = append(b, '@')
	return append(b, emailDomains[(h>>32+uint64(n))%uint64(len(emailDomains))]...)
}

// appendDeviceID appends the advertising id of device number n of profile
// idx, an 8-4-4-4-12 UUID (version 4 shape). Its last twelve digits are idx
// and the fourth group holds n, so ids are distinct across the profiles and
// devices of a stream (and, through the salt, very likely across profile
// prefixes) and never all zero; upper is how iOS prints IDFAs.
func (ids identities) appendDeviceID(b []byte, idx uint64, n int, upper bool) []byte {
	digits := "0123456789abcdef"
	if upper {
		digits = "0123456789ABCDEF"
	}
	h := mix(idx<<8 ^ uint64(n) ^ 0x5eed ^ ids.salt)
	var u [16]byte
	for i := 0; i < 8; i++ {
		u[i] = byte(h >> (8 * i))
	}
	u[6] = 0x40 | u[6]&0x0f // version 4
	u[8] = 0x80 | byte(n>>8)&0x3f
	u[9] = byte(n)
	for i := 0; i < 6; i++ {
		u[10+i] = byte(idx >> (8 * (5 - i)))
	}
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b = append(b, '-')
		}
		b = append(b, digits[c>>4], digits[c&0x0f])
	}
	return b
}

// android reports whether device n of profile idx is an Android device
// (45% of devices are); the others are iOS devices.
func (ids identities) android(idx uint64, n int) bool {
	return mix(idx<<8^uint64(n)^0xa4d701d^ids.salt)%100 < 45
}

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// appendBase62 appends n base-62 digits derived from x: ten digits from
// each of mix(x), mix(x+1), ...
func appendBase62(b []byte, x uint64, n int) []byte {
	var v uint64
	for i := 0; i < n; i++ {
		if i%10 == 0 {
			v = mix(x + uint64(i/10))
		}
		b = append(b, base62[v%62])
		v /= 62
	}
	return b
}
