package service

import (
	"context"
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/overview"
	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/pinterest"
)

// GroupView gathers the whole deployment for the group page.
type GroupView func(ctx context.Context) (overview.Overview, error)

// groupPageTimeout bounds the gathering of the group page: the brokers and
// every process's /status (each within overview.StatusTimeout).
const groupPageTimeout = 10 * time.Second

// engineView is what the HTTP handler reads from the engine.
type engineView interface {
	Status() consumer.Status
	Ready() error
	Healthy() error
}

// credentials is what the handler reads from the Pinterest client.
type credentials interface {
	CredentialsError() error
	TokenExpiry() time.Time
	WriteBudget() *pinterest.Budget
	ReadBudget() *pinterest.Budget
}

// StatusDoc is the JSON served at /status.
type StatusDoc struct {
	consumer.Status
	Ready           bool      `json:"ready"`
	NotReadyReason  string    `json:"not_ready_reason,omitempty"`
	CredentialError string    `json:"credentials_error,omitempty"`
	TokenExpiry     time.Time `json:"token_expiry,omitzero"`
	// Budget is this instance's share of the app's Pinterest budget.
	Budget BudgetDoc `json:"budget"`
}

// BudgetDoc is the requests a minute this instance may send, by category
// (-1: unlimited): its share of the app's budget, which follows the share
// of the changes topic's partitions it owns.
type BudgetDoc struct {
	WritesPerMinute float64 `json:"ads_write_per_minute"`
	ReadsPerMinute  float64 `json:"ads_read_per_minute"`
}

// Handler serves /metrics, /healthz, /readyz, /status, the status page and
// the group page (/group), which group gathers; nil when there is no
// control topic to find the other processes in.
func Handler(eng engineView, cred credentials, reg *prometheus.Registry, group GroupView) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := eng.Healthy(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("unhealthy: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := readiness(eng, cred); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(statusDoc(eng, cred))
	})
	page := template.Must(template.New("page").Funcs(template.FuncMap{
		"style": func() template.CSS { return overview.Style },
		"totalLag": func(ps []consumer.PartitionStatus) int64 {
			var n int64
			for _, p := range ps {
				n += p.Lag
			}
			return n
		},
		"perMinute": func(f float64) string {
			if f < 0 {
				return "unlimited"
			}
			return strconv.FormatFloat(f, 'f', 1, 64) + "/min"
		},
		"since": func(t time.Time) string {
			if t.IsZero() {
				return "never"
			}
			return time.Since(t).Round(time.Second).String() + " ago"
		},
	}).Parse(statusPage))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, statusDoc(eng, cred))
	})
	mux.HandleFunc("GET /group", func(w http.ResponseWriter, r *http.Request) {
		if group == nil {
			http.Error(w, `no group page: kafka.control_topic is "-", and the processes announce themselves there`, http.StatusNotFound)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), groupPageTimeout)
		defer cancel()
		o, err := group(ctx)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = overview.WriteHTML(w, o, err)
	})
	return mux
}

func readiness(eng engineView, cred credentials) error {
	if err := cred.CredentialsError(); err != nil {
		return err
	}
	return eng.Ready()
}

func statusDoc(eng engineView, cred credentials) StatusDoc {
	d := StatusDoc{Status: eng.Status(), TokenExpiry: cred.TokenExpiry(),
		Budget: BudgetDoc{WritesPerMinute: cred.WriteBudget().PerMinute(), ReadsPerMinute: cred.ReadBudget().PerMinute()}}
	if err := cred.CredentialsError(); err != nil {
		d.CredentialError = err.Error()
	}
	if err := readiness(eng, cred); err != nil {
		d.NotReadyReason = err.Error()
	} else {
		d.Ready = true
	}
	return d
}

const statusPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><title>pinsync status</title>
<style>{{style}}</style></head><body>
<h1>pinsync</h1>
<p>This process's page. Every list of the deployment, with its owner and figures: <a href="group" id="group-page">the group page</a>.</p>
<p id="ready">{{if .Ready}}<span class="ok">ready</span>{{else}}<span class="bad">not ready: {{.NotReadyReason}}</span>{{end}}</p>
<p id="group">{{if .Joined}}Member of the consumer groups{{else}}<span class="bad">Not a member of both consumer groups</span>{{end}} · input partitions owned: {{len .Partitions}} · lag: {{totalLag .Partitions}} records · list partitions owned: {{len .ListPartitions}} · changes not yet uploaded: {{totalLag .ListPartitions}} records</p>
<p>Buffered records: {{.Buffered}} ({{.BufferedBytes}} bytes){{if .FetchPaused}} (fetching paused){{end}} · uploads in flight: {{.Flights}} · changes written, not yet passed by the list stage: {{.PendingChanges}}
· write budget: {{perMinute .Budget.WritesPerMinute}} · read budget: {{perMinute .Budget.ReadsPerMinute}}
{{if not .TokenExpiry.IsZero}} · access token expires {{.TokenExpiry.Format "2006-01-02 15:04:05 MST"}}{{end}}</p>
{{if .CredentialError}}<p class="bad" id="credentials">{{.CredentialError}}</p>{{end}}
{{if .LastError}}<p class="bad">last upload error: {{.LastError}}</p>{{end}}
{{if .RegistryWaits}}<p class="bad" id="registry">waiting for the schema registry: {{range $i, $w := .RegistryWaits}}{{if $i}}, {{end}}partition {{$w.Partition}} since {{since $w.Since}}{{end}} ({{(index .RegistryWaits 0).Error}})</p>{{end}}
{{if .MisKeyed}}<p class="bad" id="mis-keyed">records not keyed by their profile id: {{range $i, $m := .MisKeyed}}{{if $i}}, {{end}}partition {{$m.Partition}}: {{$m.Missing}} without a key, {{$m.NotProfile}} keyed otherwise (last at offset {{$m.LastOffset}}){{end}}</p>{{end}}
{{if .Parked}}<p class="bad" id="parked">parked, waiting for a rebuild: {{range $i, $p := .Parked}}{{if $i}}, {{end}}{{$p}}{{end}}</p>{{end}}
<h2>Lists owned here</h2>
<table id="lists"><thead><tr><th>audience</th><th>list type</th><th>customer list</th><th>Pinterest audience</th><th>partition</th><th>pending</th><th>last flush</th><th>records added</th><th>records removed</th><th>Pinterest size</th><th>Pinterest status</th><th>list created</th><th>generation</th><th>parked</th></tr></thead><tbody>
{{range $a := .Audiences}}{{range .Lists}}<tr><td>{{$a.Key}}</td><td>{{.ListType}}</td><td>{{.CustomerListID}}</td><td>{{.AudienceID}}</td><td>{{.Partition}}</td><td>{{.Pending}}</td><td>{{since .LastFlush}}</td><td>{{.UploadedAdds}}</td><td>{{.UploadedRemoves}}</td><td>{{.PinterestSize}}</td><td>{{.PinterestState}}</td><td>{{if not .ListCreated.IsZero}}{{.ListCreated.Format "2006-01-02 15:04 MST"}}{{end}}</td><td>{{.Generation}}</td><td>{{.Parked}}</td></tr>
{{end}}{{end}}</tbody></table>
<h2>Audiences seen here</h2>
<table id="audiences"><thead><tr><th>audience</th><th>name</th><th>ad account</th><th>synced</th><th>local members</th><th>local EMAIL records</th><th>local IDFA records</th><th>local MAID records</th></tr></thead><tbody>
{{range .Audiences}}<tr><td>{{.Key}}</td><td>{{.Name}}</td><td>{{.AdAccount}}</td><td>{{.Synced}}</td><td>{{.LocalMembers}}</td><td>{{index .LocalRecords "EMAIL"}}</td><td>{{index .LocalRecords "IDFA"}}</td><td>{{index .LocalRecords "MAID"}}</td></tr>
{{end}}</tbody></table>
<h2>Input partitions (profile stage)</h2>
<table id="partitions"><thead><tr><th>topic</th><th>partition</th><th>committed</th><th>high watermark</th><th>lag</th><th>halted</th></tr></thead><tbody>
{{range .Partitions}}<tr><td>{{.Topic}}</td><td>{{.Partition}}</td><td>{{.Committed}}</td><td>{{.HighWatermark}}</td><td>{{.Lag}}</td><td>{{if .Halted}}<span class="bad">{{.Halted}}</span>{{end}}</td></tr>
{{end}}</tbody></table>
<h2>Changes partitions (list stage)</h2>
<table id="list-partitions"><thead><tr><th>topic</th><th>partition</th><th>committed</th><th>high watermark</th><th>lag</th><th>halted</th></tr></thead><tbody>
{{range .ListPartitions}}<tr><td>{{.Topic}}</td><td>{{.Partition}}</td><td>{{.Committed}}</td><td>{{.HighWatermark}}</td><td>{{.Lag}}</td><td>{{if .Halted}}<span class="bad">{{.Halted}}</span>{{end}}</td></tr>
{{end}}</tbody></table>
<p>Each list has one owner group-wide: its row is on its owner's page only, with figures of the whole list. Local members are the profiles in the audience on this instance's input partitions, local records the identifiers they hold; the sums over instances are the audience and what its lists hold. Records added and removed count this owner's writes. Pinterest size counts matched Pinterest users, not uploaded records; matching takes up to 48 hours, and a list whose size stays far below its records (the recorded pinsync:list_match_ratio) is sending identifiers Pinterest cannot match. This page refreshes every 10 seconds; the same data is at <a href="status">/status</a>, metrics at <a href="metrics">/metrics</a>.</p>
</body></html>
`
