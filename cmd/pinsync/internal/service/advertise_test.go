package service

import "testing"

func TestAdvertisedURLIsWhereOthersReachThisProcess(t *testing.T) {
	hostname := func() (string, error) { return "pinsync-2", nil }
	for _, c := range []struct{ advertise, listening, want string }{
		{"", "127.0.0.1:41234", "http://127.0.0.1:41234"},
		{"", "[::]:8080", "http://pinsync-2:8080"},
		{"", "0.0.0.0:8080", "http://pinsync-2:8080"},
		{"10.1.2.3", "[::]:8080", "http://10.1.2.3:8080"},
		{"pinsync-0.pinsync:9090", "[::]:8080", "http://pinsync-0.pinsync:9090"},
		{"fd00::7", "[::]:8080", "http://[fd00::7]:8080"},
	} {
		got, err := advertisedURL(c.advertise, c.listening, hostname)
		if err != nil || got != c.want {
			t.Errorf("advertise %q, listening on %s: %q, %v; want %q", c.advertise, c.listening, got, err, c.want)
		}
	}
}
