package commit

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the commit series a stage keeps per partition it owns. Both
// stages share the families (one per name, labelled by stage by whoever
// registers them).
type Metrics struct {
	// Committed is the next offset committed, by topic and partition.
	Committed *prometheus.GaugeVec
	// Lag is the high watermark minus the committed offset, by topic and
	// partition.
	Lag *prometheus.GaugeVec
	// LastCommit is the Unix time of the last successful commit.
	LastCommit prometheus.Gauge
}

// OrDefaults returns m with unregistered series in place of missing ones.
func (m Metrics) OrDefaults() Metrics {
	if m.Committed == nil {
		m.Committed = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "committed_offset"}, []string{"topic", "partition"})
	}
	if m.Lag == nil {
		m.Lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "consumer_lag"}, []string{"topic", "partition"})
	}
	if m.LastCommit == nil {
		m.LastCommit = prometheus.NewGauge(prometheus.GaugeOpts{Name: "last_commit"})
	}
	return m
}

// PartitionStatus is the commit progress of one owned partition, for
// /status.
type PartitionStatus struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Committed     int64  `json:"committed_offset"`
	HighWatermark int64  `json:"high_watermark"`
	Lag           int64  `json:"lag"`
	// Halted is why the partition's reader stopped (see member.Halt);
	// empty while it reads.
	Halted string `json:"halted,omitempty"`
}
