package profiles

import "github.com/prometheus/client_golang/prometheus"

// metrics are the profile stage's own Prometheus series. Labels come from
// closed sets, except audience keys, which are bounded by the audiences
// synced.
type metrics struct {
	events       *prometheus.CounterVec
	changes      *prometheus.CounterVec
	pending      prometheus.Gauge
	transactions *prometheus.CounterVec
	restoring    prometheus.Gauge
	restored     prometheus.Counter
	localMembers *prometheus.GaugeVec
	localRecords *prometheus.GaugeVec
	// registryWaiting and registryErrors: see registrywait.go.
	registryWaiting prometheus.Gauge
	registryErrors  prometheus.Counter
	// misKeyed: see miskeyed.go.
	misKeyed *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_events_total", Help: "Events read, by kind and outcome (applied, dead_lettered, filtered).",
		}, []string{"kind", "outcome"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_changes_total", Help: "List changes derived from events and written to the changes topic, by operation.",
		}, []string{"op"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_changes_pending", Help: "List changes this instance wrote that the list stage has not committed past; fetching pauses at sync.max_buffered_records.",
		}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_transactions_total", Help: "Transactions of the profile stage (changes, state and position of one partition), by outcome (committed, aborted).",
		}, []string{"outcome"}),
		restoring: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_restoring_partitions", Help: "Partitions whose state is being restored from the changelog.",
		}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinsync_restored_profiles_total", Help: "Profiles restored from the changelog (its rate is the restore rate).",
		}),
		localMembers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_audience_local_members", Help: "Profiles of this instance's input partitions in the audience (the sum over instances is the audience's members).",
		}, []string{"audience"}),
		localRecords: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pinsync_audience_local_records", Help: "Identifiers of the list's type that the audience's members on this instance's input partitions hold (the sum over instances is what the list holds once synced).",
		}, []string{"audience", "list_type"}),
		registryWaiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pinsync_schema_registry_waiting_partitions", Help: "Input partitions paused at a record whose schema the schema registry cannot tell now (down, timing out, 5xx, refusing the credentials); they read on once it answers.",
		}),
		registryErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "pinsync_schema_registry_errors_total", Help: "Attempts to get a record's schema that the schema registry did not answer (each pauses or keeps paused the record's partition; none dead-letters it).",
		}),
		misKeyed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pinsync_miskeyed_records_total", Help: "Input records not keyed by the profile id of their payload, by key (missing, not_profile): their profile's events may reach several partitions.",
		}, []string{"key"}),
	}
	m.misKeyed.WithLabelValues("missing")
	m.misKeyed.WithLabelValues("not_profile")
	m.transactions.WithLabelValues("committed")
	m.transactions.WithLabelValues("aborted")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.events, m.changes, m.pending, m.transactions, m.restoring, m.restored, m.localMembers, m.localRecords, m.registryWaiting, m.registryErrors, m.misKeyed} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
