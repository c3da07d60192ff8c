package pinterest

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Request categories, as Pinterest's rate limits name them.
const (
	categoryRead  = "ads_read"
	categoryWrite = "ads_write"
	categoryOAuth = "oauth"
)

// metrics are the client's collectors. They exist even when no Registerer
// is given, so the code never checks for nil.
type metrics struct {
	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	rateLimited   prometheus.Counter
	refreshes     *prometheus.CounterVec
	credsRejected prometheus.Gauge
	tokenExpiry   prometheus.Gauge
	breakerState  *prometheus.GaugeVec
	budget        *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_pinterest_requests_total",
			Help: "HTTP requests sent to Pinterest, by rate-limit category and response status (\"error\" when no response arrived).",
		}, []string{"category", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pinsync_pinterest_request_duration_seconds",
			Help:    "Duration of single HTTP requests to Pinterest, by rate-limit category.",
			Buckets: []float64{.025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"category"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinsync_rate_limited_total",
			Help: "Responses with HTTP 429 from Pinterest.",
		}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_token_refreshes_total",
			Help: "OAuth access-token refreshes, by outcome (ok or error).",
		}, []string{"outcome"}),
		credsRejected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_credentials_rejected",
			Help: "1 when Pinterest rejected the stored credentials for good: run `pinsync auth`.",
		}),
		tokenExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_token_expiry_timestamp_seconds",
			Help: "Unix time at which the current access token expires.",
		}),
		breakerState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_breaker_state",
			Help: "Circuit breaker around writes per ad account: 0 closed, 1 half-open, 2 open.",
		}, []string{"ad_account"}),
		budget: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_budget_per_minute",
			Help: "Requests a minute this instance may send, by rate-limit category: its share of the app's budget (-1: unlimited).",
		}, []string{"category"}),
	}
	m.refreshes.WithLabelValues("ok")
	m.refreshes.WithLabelValues("error")
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.rateLimited, m.refreshes, m.credsRejected, m.tokenExpiry, m.breakerState, m.budget} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("pinterest: register metrics: %w", err)
	}
	return m, nil
}

// instrumented counts and times every request by category. Categories come
// from the request: the token endpoint is oauth, GET is ads_read, and every
// other method is ads_write (true of all the endpoints this client calls).
type instrumented struct {
	next http.RoundTripper
	m    *metrics
}

// RoundTrip sends req and records its category, status and duration.
func (t *instrumented) RoundTrip(req *http.Request) (*http.Response, error) {
	cat := requestCategory(req)
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.m.duration.WithLabelValues(cat).Observe(time.Since(start).Seconds())
	if err != nil {
		t.m.requests.WithLabelValues(cat, "error").Inc()
		return nil, err
	}
	t.m.requests.WithLabelValues(cat, strconv.Itoa(resp.StatusCode)).Inc()
	if resp.StatusCode == http.StatusTooManyRequests {
		t.m.rateLimited.Inc()
	}
	return resp, nil
}

func requestCategory(req *http.Request) string {
	switch {
	case strings.HasSuffix(req.URL.Path, "/oauth/token"):
		return categoryOAuth
	case req.Method == http.MethodGet:
		return categoryRead
	default:
		return categoryWrite
	}
}
