package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The values of kafka.leave_on_shutdown: whether a static member (one with
// kafka.instance_id) leaves its groups when pinsync stops on SIGTERM.
// Leaving moves its partitions to the others at once; staying keeps them
// for its instance id until kafka.session_timeout, so that a restart gets
// them back without a rebalance. A dynamic member always leaves.
const (
	// LeaveNever keeps the partitions for the instance id: every stop is
	// taken for a restart.
	LeaveNever = "never"
	// LeaveAlways leaves at every stop: every stop is taken for good.
	LeaveAlways = "always"
	// LeaveStatefulSet asks Kubernetes at the stop: the pod of a
	// StatefulSet whose ordinal is at or past the StatefulSet's replicas
	// (its scale, as KEDA or kubectl scale set it) was scaled away and
	// leaves; any other stop (a rolling update, an eviction, a deleted
	// pod) is a restart. A StatefulSet that is gone wants no pod.
	LeaveStatefulSet = "statefulset"
)

// serviceAccountDir is where Kubernetes mounts a pod's service account:
// its token, the cluster's CA and the pod's namespace.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// scaleTimeout bounds the question to the Kubernetes API at a stop.
const scaleTimeout = 5 * time.Second

// leaveDecider returns the engine's Deps.Leave for kafka.leave_on_shutdown
// (nil: never leave). The statefulset mode reads the pod's service account
// and name now, so that a pod that cannot ask fails at start, not at its
// stop.
func leaveDecider(mode string, log *slog.Logger) (func(context.Context) bool, error) {
	switch mode {
	case LeaveNever:
		return nil, nil
	case LeaveAlways:
		return func(context.Context) bool { return true }, nil
	case LeaveStatefulSet:
		pod, err := inStatefulSet(os.Getenv, serviceAccountDir, os.Hostname)
		if err != nil {
			return nil, fmt.Errorf("kafka.leave_on_shutdown %s: %w", mode, err)
		}
		return pod.decide(log), nil
	}
	return nil, fmt.Errorf("kafka.leave_on_shutdown: must be never, always or statefulset, got %q", mode)
}

// statefulSetPod is this process as the pod of a StatefulSet, which asks
// the Kubernetes API whether its StatefulSet still wants it.
type statefulSetPod struct {
	scaleURL  string // the StatefulSet's scale subresource
	tokenFile string
	client    *http.Client
	set       string
	ordinal   int
}

// inStatefulSet finds the pod's StatefulSet from its name (hostname: a
// StatefulSet's pods are named, and their hostname is, "<set>-<ordinal>")
// and the API server from the environment Kubernetes gives every pod
// (KUBERNETES_SERVICE_HOST and _PORT) and its service account in dir.
func inStatefulSet(getenv func(string) string, dir string, hostname func() (string, error)) (*statefulSetPod, error) {
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("not in a Kubernetes pod (no KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT)")
	}
	name, err := hostname()
	if err != nil {
		return nil, fmt.Errorf("the pod's name: %w", err)
	}
	i := strings.LastIndexByte(name, '-')
	ordinal, err := strconv.Atoi(name[i+1:])
	if i <= 0 || err != nil || ordinal < 0 {
		return nil, fmt.Errorf("the pod %q is not a StatefulSet's (<name>-<ordinal>)", name)
	}
	ns, err := os.ReadFile(filepath.Join(dir, "namespace"))
	if err != nil {
		return nil, fmt.Errorf("the pod's service account (automountServiceAccountToken): %w", err)
	}
	ca, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("the pod's service account: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("the pod's service account: no certificate in %s", filepath.Join(dir, "ca.crt"))
	}
	tokenFile := filepath.Join(dir, "token")
	if _, err := os.Stat(tokenFile); err != nil {
		return nil, fmt.Errorf("the pod's service account: %w", err)
	}
	set := name[:i]
	u := url.URL{Scheme: "https", Host: net.JoinHostPort(host, port),
		Path: "/apis/apps/v1/namespaces/" + strings.TrimSpace(string(ns)) + "/statefulsets/" + set + "/scale"}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &statefulSetPod{scaleURL: u.String(), tokenFile: tokenFile, set: set, ordinal: ordinal,
		client: &http.Client{Transport: tr, Timeout: scaleTimeout}}, nil
}

// wanted reports whether the StatefulSet still wants this pod: its ordinal
// is below the replicas of the StatefulSet's scale. A StatefulSet that is
// gone (404) wants none.
func (p *statefulSetPod) wanted(ctx context.Context) (bool, error) {
	// The token is read at each question: Kubernetes rotates it.
	token, err := os.ReadFile(p.tokenFile)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, scaleTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.scaleURL, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return false, nil
	default:
		return false, fmt.Errorf("GET %s: %s", p.scaleURL, resp.Status)
	}
	var scale struct {
		Spec struct {
			Replicas *int `json:"replicas"`
		} `json:"spec"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&scale); err != nil {
		return false, fmt.Errorf("GET %s: %w", p.scaleURL, err)
	}
	if scale.Spec.Replicas == nil {
		return false, fmt.Errorf("GET %s: no spec.replicas", p.scaleURL)
	}
	return p.ordinal < *scale.Spec.Replicas, nil
}

// decide is the engine's Deps.Leave: leave when the StatefulSet no longer
// wants this pod. When Kubernetes cannot say, the stop is taken for a
// restart: the partitions wait for the session timeout, as without the
// setting.
func (p *statefulSetPod) decide(log *slog.Logger) func(context.Context) bool {
	return func(ctx context.Context) bool {
		wanted, err := p.wanted(ctx)
		switch {
		case err != nil:
			log.Warn("kafka.leave_on_shutdown statefulset: Kubernetes did not say whether this pod was scaled away; taken for a restart, its partitions wait for the session timeout",
				"statefulset", p.set, "ordinal", p.ordinal, "err", err)
			return false
		case wanted:
			log.Info("kafka.leave_on_shutdown statefulset: the StatefulSet still wants this pod: a restart, its partitions are kept for its instance id", "statefulset", p.set, "ordinal", p.ordinal)
			return false
		}
		log.Info("kafka.leave_on_shutdown statefulset: the StatefulSet scaled this pod away: leaving the groups", "statefulset", p.set, "ordinal", p.ordinal)
		return true
	}
}
