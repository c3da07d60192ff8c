package lists

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pinsync/pinsync/consumer/lists/window"
)

// FlushReasons returns every reason a window is flushed for: the values
// of pinsync_flushes_total's reason label.
func FlushReasons() []string {
	return []string{window.FlushFull, window.FlushInterval, window.FlushRevoke, window.FlushShutdown}
}

// metrics are the list stage's own Prometheus series, its sink's aside.
// Labels come from closed sets.
type metrics struct {
	read           *prometheus.CounterVec
	malformed      prometheus.Counter
	buffered       prometheus.Gauge
	bufferedBytes  prometheus.Gauge
	flushes        *prometheus.CounterVec
	uploadDuration prometheus.Histogram
	eventToUpload  prometheus.Histogram
	dropped        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, flushInterval time.Duration) (*metrics, error) {
	m := &metrics{
		read: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_changes_read_total", Help: "List changes the list stage read from the changes topic, by operation.",
		}, []string{"op"}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinsync_changes_malformed_total", Help: "Records of the changes topic skipped because they are not changes records.",
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_buffered_records", Help: "Records waiting in windows or in flight, all windows of this member.",
		}),
		bufferedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_buffered_bytes", Help: "Memory the windows of this member hold for their records (tables, and room for each record in a flight), counted against sync.max_buffered_bytes.",
		}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_flushes_total", Help: "Window flushes, by reason (full, interval, revoke, shutdown) and outcome (ok, error, not_owner, parked: the list was marked for a rebuild and its changes dropped).",
		}, []string{"reason", "outcome"}),
		uploadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pinsync_upload_duration_seconds", Help: "Duration of one window flush, including retries.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}),
		eventToUpload: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pinsync_event_to_upload_seconds", Help: "Time from an event's timestamp to the upload that carried its change.",
			Buckets: latencyBuckets(flushInterval),
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_changes_dropped_total", Help: "List changes read and deliberately not uploaded, by reason (legacy_idfa: an IDFA add an earlier pinsync hashed from the lower-case id, which Pinterest matches nobody by).",
		}, []string{"reason"}),
	}
	m.dropped.WithLabelValues(droppedLegacyIDFA)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.read, m.malformed, m.buffered, m.bufferedBytes, m.flushes, m.uploadDuration, m.eventToUpload, m.dropped,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// droppedLegacyIDFA is the reason of pinsync_changes_dropped_total for an
// IDFA add written by a version that hashed IDFAs in lower case.
const droppedLegacyIDFA = "legacy_idfa"

// latencyBuckets are the event-to-upload buckets: a wide range, plus fine
// ones around the flush interval, the wait a change is designed to have, so
// that "p99 within the flush interval plus a second" can be read off them.
func latencyBuckets(flush time.Duration) []float64 {
	b := []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 900, 3600}
	f := flush.Seconds()
	for _, m := range []float64{0.5, 0.9, 1, 1.05, 1.1} {
		b = append(b, f*m)
	}
	b = append(b, f+0.25, f+0.5, f+1, f+2)
	slices.Sort(b)
	return slices.Compact(b)
}
