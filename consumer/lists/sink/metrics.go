package sink

import "github.com/prometheus/client_golang/prometheus"

// metrics are the sink's Prometheus series. Labels come from closed sets,
// except audience keys, which are bounded by the audiences synced (one
// series per audience and list type).
type metrics struct {
	perRequest                       prometheus.Histogram
	uploads                          *prometheus.CounterVec
	uploaded                         *prometheus.CounterVec
	pinSize                          *prometheus.GaugeVec
	pinReady                         *prometheus.GaugeVec
	listCreated                      *prometheus.GaugeVec
	parked                           *prometheus.GaugeVec
	rebuildAttempts, rebuildProgress *prometheus.GaugeVec
	rebuilds                         *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		perRequest: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "pinsync_records_per_request", Help: "Records per Pinterest write request.",
			Buckets: []float64{1, 10, 50, 100, 500, 1000, 2000, 3000, 4000, 5000, 10000},
		}),
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_uploads_total", Help: "Pinterest list writes, by operation (add, remove, create) and outcome.",
		}, []string{"op", "outcome"}),
		uploaded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_audience_uploaded_records_total", Help: "Records uploaded per audience, list type and operation.",
		}, []string{"audience", "list_type", "op"}),
		pinSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_audience_pinterest_size", Help: "Matched users Pinterest reports for the audience (not uploads).",
		}, []string{"audience", "list_type"}),
		pinReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_audience_ready", Help: "1 when Pinterest reports the audience READY.",
		}, []string{"audience", "list_type"}),
		listCreated: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_list_created_timestamp_seconds", Help: "Unix time at which Pinterest created the customer list the audience follows (its size is judged only once Pinterest has had a day or two to match it). Only the list's owner reports it.",
		}, []string{"audience", "list_type"}),
		parked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_list_parked",
			Help: "1 while a list waits for a rebuild from the profile state, its changes dropped, by reason: permission (the role on the ad account is gone), not_found (deleted at Pinterest, or its ad account unknown), refused (a request about the list without its records refused for good: its name, its audience, its ad account), requested (pinsync resync). Only the list's owner reports it.",
		}, []string{"audience", "list_type", "reason"}),
		rebuildAttempts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_list_rebuild_attempts",
			Help: "Attempts in a row of a list's rebuild that made no progress (no changelog partition filled); at 10 the rebuild is no longer tried until pinsync resync. Only the list's owner reports it, while the list waits for its rebuild.",
		}, []string{"audience", "list_type"}),
		rebuildProgress: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_list_rebuild_progress",
			Help: "Share of the changelog's partitions whose members a rebuild's new list holds (0 to 1). Only the list's owner reports it, while the rebuild is under way.",
		}, []string{"audience", "list_type"}),
		rebuilds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_list_rebuilds_total", Help: "Attempts to rebuild a list from the profile state, by outcome (ok, error; partial: made again without the state, without a changelog or a control topic, holding only the members added from then on).",
		}, []string{"outcome"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{
		m.perRequest, m.uploads, m.uploaded, m.pinSize, m.pinReady, m.listCreated, m.parked, m.rebuilds, m.rebuildAttempts, m.rebuildProgress,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// countUploaded counts n records a write took for li, by op (add,
// remove).
func (m *metrics) countUploaded(li *list, op string, n int) {
	m.uploaded.WithLabelValues(li.key.Audience, li.key.Type.String(), op).Add(float64(n))
	li.countUploaded(op, n)
}

// forget drops the series of lists: their next owner reports them.
func (m *metrics) forget(lists []*list) {
	for _, li := range lists {
		labels := map[string]string{"audience": li.key.Audience, "list_type": li.key.Type.String()}
		for _, g := range []*prometheus.GaugeVec{m.pinSize, m.pinReady, m.listCreated} {
			g.DeletePartialMatch(labels)
		}
	}
}
