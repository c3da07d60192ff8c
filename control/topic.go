package control

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a Topic.
type Config struct {
	// Kafka holds the connection options (brokers, TLS, SASL, client id).
	Kafka []kgo.Opt
	// Topic is the control topic (kafka.control_topic), created when
	// missing.
	Topic string
	// RefreshTimeout is how long a token refresh claim holds before
	// another replica may take it over; 0 means DefaultRefreshTimeout.
	RefreshTimeout time.Duration
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	if c.Topic == "" {
		errs = append(errs, errors.New("control: Topic is required (kafka.control_topic)"))
	}
	if c.RefreshTimeout < 0 {
		errs = append(errs, errors.New("control: RefreshTimeout must not be negative"))
	}
	return errors.Join(errs...)
}

// Topic is one process's view of the control topic: a Log whose records
// feed the list registry and the token store. Its methods are safe for
// concurrent use. Close it when done.
type Topic struct {
	cfg    Config
	logger *slog.Logger
	log    *Log

	mu        sync.Mutex
	tokens    tokenState
	registry  map[ListKey]registered
	layout    *Layout // nil until recorded
	instances map[string]Instance
	// budgetWatchers are told of every budget record (WatchBudget);
	// budget holds the latest of each budget key, for a new watcher.
	budgetWatchers map[int]func(BudgetRecord)
	nextWatcher    int
	budget         map[string]BudgetRecord
}

// Open opens the control topic, creating it when missing, and starts
// reading it from its start.
func Open(ctx context.Context, cfg Config) (*Topic, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.RefreshTimeout == 0 {
		cfg.RefreshTimeout = DefaultRefreshTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := &Topic{cfg: cfg, logger: logger, registry: make(map[ListKey]registered), instances: make(map[string]Instance),
		budgetWatchers: make(map[int]func(BudgetRecord)), budget: make(map[string]BudgetRecord)}
	l, err := OpenLog(ctx, LogConfig{Kafka: cfg.Kafka, Topic: cfg.Topic, Apply: t.apply, Logger: logger})
	if err != nil {
		return nil, err
	}
	t.log = l
	return t, nil
}

// apply folds one record into the state it belongs to, or hands a budget
// record to the watchers; records of keys this version does not know are
// skipped.
func (t *Topic) apply(r Record) {
	if b, ok, valid := parseBudget(r); ok {
		t.mu.Lock()
		if !valid {
			delete(t.budget, r.Key)
			t.mu.Unlock()
			return
		}
		t.budget[r.Key] = b
		watchers := make([]func(BudgetRecord), 0, len(t.budgetWatchers))
		for _, fn := range t.budgetWatchers {
			watchers = append(watchers, fn)
		}
		t.mu.Unlock()
		for _, fn := range watchers {
			fn(b)
		}
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tokens.apply(r, t.cfg.RefreshTimeout) || t.applyLayout(r) || t.applyInstance(r) {
		return
	}
	t.applyRegistry(r)
}

// Close stops reading the topic.
func (t *Topic) Close() { t.log.Close() }
