package consumer

import (
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus series. Labels come from closed sets,
// except audience keys, which are bounded by the audiences configured (one
// series per audience and list type).
type metrics struct {
	events         *prometheus.CounterVec
	changes        *prometheus.CounterVec
	buffered       prometheus.Gauge
	fetchPaused    prometheus.Gauge
	flushes        *prometheus.CounterVec
	perRequest     prometheus.Histogram
	uploads        *prometheus.CounterVec
	uploadDuration prometheus.Histogram
	eventToUpload  prometheus.Histogram
	committed      *prometheus.GaugeVec
	lag            *prometheus.GaugeVec
	lastCommit     prometheus.Gauge
	deadLetters    *prometheus.CounterVec
	assigned       prometheus.Gauge
	restoring      prometheus.Gauge
	restored       prometheus.Counter
	localMembers   *prometheus.GaugeVec
	uploaded       *prometheus.CounterVec
	pinSize        *prometheus.GaugeVec
	pinReady       *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer, flushInterval time.Duration) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_events_total", Help: "Events read, by kind and outcome (applied, dead_lettered, filtered).",
		}, []string{"kind", "outcome"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_changes_total", Help: "List changes derived from events, by operation.",
		}, []string{"op"}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_buffered_records", Help: "Records waiting in windows or in flight, all windows.",
		}),
		fetchPaused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_fetch_paused", Help: "1 while fetching is paused because buffered records reached sync.max_buffered_records.",
		}),
		flushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_flushes_total", Help: "Window flushes, by reason (full, interval, revoke, shutdown) and outcome.",
		}, []string{"reason", "outcome"}),
		perRequest: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pinsync_records_per_request", Help: "Records per Pinterest write request.",
			Buckets: []float64{1, 10, 50, 100, 500, 1000, 2000, 3000, 4000, 5000, 10000},
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_uploads_total", Help: "Pinterest list writes, by operation (add, remove, create) and outcome.",
		}, []string{"op", "outcome"}),
		uploadDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pinsync_upload_duration_seconds", Help: "Duration of one window flush, including retries.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}),
		eventToUpload: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pinsync_event_to_upload_seconds", Help: "Time from an event's timestamp to the upload that carried its change.",
			Buckets: latencyBuckets(flushInterval),
		}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_committed_offset", Help: "Next offset committed, per partition.",
		}, []string{"topic", "partition"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_consumer_lag", Help: "High watermark minus committed offset, per owned partition.",
		}, []string{"topic", "partition"}),
		lastCommit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_last_commit_timestamp_seconds", Help: "Unix time of the last successful offset commit.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_dead_letters_total", Help: "Records sent to the dead-letter topic, by reason.",
		}, []string{"reason"}),
		assigned: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_assigned_partitions", Help: "Partitions this member owns.",
		}),
		restoring: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_restoring_partitions", Help: "Partitions whose state is being restored from the changelog.",
		}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinsync_restored_profiles_total", Help: "Profiles restored from the changelog (its rate is the restore rate).",
		}),
		localMembers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_audience_local_members", Help: "Profiles this member holds in the audience.",
		}, []string{"audience"}),
		uploaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_audience_uploaded_records_total", Help: "Records uploaded per audience, list type and operation.",
		}, []string{"audience", "list_type", "op"}),
		pinSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_audience_pinterest_size", Help: "Matched users Pinterest reports for the audience (not uploads).",
		}, []string{"audience", "list_type"}),
		pinReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_audience_ready", Help: "1 when Pinterest reports the audience READY.",
		}, []string{"audience", "list_type"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.events, m.changes, m.buffered, m.fetchPaused, m.flushes, m.perRequest, m.uploads,
		m.uploadDuration, m.eventToUpload, m.committed, m.lag, m.lastCommit, m.deadLetters,
		m.assigned, m.restoring, m.restored, m.localMembers, m.uploaded, m.pinSize, m.pinReady,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

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
