package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tool returns the path of an external validator, skipping the test when it
// is missing (failing under CI=true).
func tool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		skipOrFail(t, "%s is not installed (%s)", name, install)
	}
	return p
}

// run runs a command in dir and fails the test with its output if it fails.
func run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
}

const promtoolInstall = "Debian: apt-get install prometheus"

func TestPromtoolAcceptsTheRules(t *testing.T) {
	promtool := tool(t, "promtool", promtoolInstall)
	run(t, "prometheus", promtool, "check", "rules", "pinsync-rules.yaml")
	run(t, "prometheus", promtool, "test", "rules", "pinsync-rules.test.yaml")
}

func TestPromtoolAcceptsTheComposePrometheusConfig(t *testing.T) {
	promtool := tool(t, "promtool", promtoolInstall)
	run(t, "compose", promtool, "check", "config", "--syntax-only", "prometheus.yml")
}

// TestDashboardQueriesParse hands every dashboard query to promtool as a
// recording rule, with Grafana's variables replaced by what they expand to.
func TestDashboardQueriesParse(t *testing.T) {
	promtool := tool(t, "promtool", promtoolInstall)
	grafanaVars := strings.NewReplacer(
		"$__rate_interval", "1m",
		"$__interval", "1m",
		"$__range", "1h",
		"$job", ".*",
	)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for title, exprs := range dashboardExprs(t, loadDashboard(t)) {
		for _, e := range exprs {
			n++
			e = grafanaVars.Replace(e)
			if strings.Contains(e, "$") {
				t.Errorf("panel %q: query %q has a variable this test does not know", title, e)
			}
			fmt.Fprintf(&b, "      - record: dashboard:query%d\n        expr: %q\n", n, e)
		}
	}
	path := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, ".", promtool, "check", "rules", path)
}

func TestDockerComposeAcceptsTheFile(t *testing.T) {
	if p, err := exec.LookPath("docker-compose"); err == nil {
		run(t, ".", p, "-f", "../docker-compose.yml", "config", "-q")
		return
	}
	// Compose v2 as a docker CLI plugin will do as well.
	if docker, err := exec.LookPath("docker"); err == nil && exec.Command(docker, "compose", "version").Run() == nil {
		run(t, ".", docker, "compose", "-f", "../docker-compose.yml", "config", "-q")
		return
	}
	skipOrFail(t, "neither docker-compose nor the docker compose plugin is installed (Debian: apt-get install docker-compose)")
}
