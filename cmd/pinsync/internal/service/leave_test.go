package service

import (
	"context"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// kubeAPI is a Kubernetes API server that knows one StatefulSet's scale
// ("-1": the StatefulSet is gone), and the service account a pod of it
// would have, in a directory.
type kubeAPI struct {
	replicas atomic.Int64
	token    atomic.Pointer[string]
	dir      string
	env      map[string]string
}

func newKubeAPI(t *testing.T, namespace, set string) *kubeAPI {
	t.Helper()
	k := &kubeAPI{dir: t.TempDir()}
	first := "token-1"
	k.token.Store(&first)
	path := "/apis/apps/v1/namespaces/" + namespace + "/statefulsets/" + set + "/scale"
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+*k.token.Load() {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		n := k.replicas.Load()
		if r.URL.Path != path || n < 0 {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"kind":"Scale","apiVersion":"autoscaling/v1","metadata":{"name":%q},"spec":{"replicas":%d},"status":{"replicas":%d}}`, set, n, n)
	}))
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for name, content := range map[string]string{"ca.crt": string(ca), "token": first + "\n", "namespace": namespace} {
		if err := os.WriteFile(filepath.Join(k.dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	k.env = map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}
	return k
}

func (k *kubeAPI) getenv(name string) string { return k.env[name] }

// TestStatefulSetPodLeavesOnlyWhenScaledAway asks, as pods pinsync-0 and
// pinsync-2 of StatefulSet pinsync, whether they leave their groups at a
// stop: only a pod whose ordinal is at or past the StatefulSet's replicas
// does (it was scaled away), and every pod once the StatefulSet is gone. A
// pod whose question fails stays (taken for a restart).
func TestStatefulSetPodLeavesOnlyWhenScaledAway(t *testing.T) {
	k := newKubeAPI(t, "crm", "pinsync")
	pod := func(name string) func(context.Context) bool {
		p, err := inStatefulSet(k.getenv, k.dir, func() (string, error) { return name, nil })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return p.decide(slog.New(slog.DiscardHandler))
	}
	first, third := pod("pinsync-0"), pod("pinsync-2")
	for _, c := range []struct {
		replicas    int64
		first, last bool
	}{
		{3, false, false},  // a restart: both still wanted
		{2, false, true},   // scaled to two: pinsync-2 goes
		{0, true, true},    // scaled to zero
		{-1, true, true},   // the StatefulSet was deleted
		{12, false, false}, // scaled up meanwhile
	} {
		k.replicas.Store(c.replicas)
		if got := first(t.Context()); got != c.first {
			t.Errorf("replicas %d: pinsync-0 leaves %v, want %v", c.replicas, got, c.first)
		}
		if got := third(t.Context()); got != c.last {
			t.Errorf("replicas %d: pinsync-2 leaves %v, want %v", c.replicas, got, c.last)
		}
	}

	// A refused question (the token rotated away, RBAC missing) is taken
	// for a restart.
	k.replicas.Store(0)
	rotated := "token-2"
	k.token.Store(&rotated)
	if third(t.Context()) {
		t.Error("pinsync-2 leaves although Kubernetes refused the question")
	}
	// The token is read at each question: the rotated one is used.
	if err := os.WriteFile(filepath.Join(k.dir, "token"), []byte("token-2"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !third(t.Context()) {
		t.Error("pinsync-2 stays after the token was rotated, scaled to zero")
	}
}

// TestLeaveOnShutdownStatefulSetNeedsAPod: outside a StatefulSet's pod the
// statefulset mode fails at start, naming what is missing.
func TestLeaveOnShutdownStatefulSetNeedsAPod(t *testing.T) {
	k := newKubeAPI(t, "crm", "pinsync")
	for _, c := range []struct {
		name   string
		getenv func(string) string
		dir    string
		host   string
	}{
		{"no API server", func(string) string { return "" }, k.dir, "pinsync-0"},
		{"not a StatefulSet's pod", k.getenv, k.dir, "pinsync"},
		{"no ordinal", k.getenv, k.dir, "pinsync-x"},
		{"no service account", k.getenv, t.TempDir(), "pinsync-0"},
	} {
		if _, err := inStatefulSet(c.getenv, c.dir, func() (string, error) { return c.host, nil }); err == nil {
			t.Errorf("%s: no error", c.name)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
	}
	if _, err := leaveDecider("sometimes", slog.New(slog.DiscardHandler)); err == nil {
		t.Error("kafka.leave_on_shutdown sometimes: no error")
	}
}
