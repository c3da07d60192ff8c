// Package demo runs the whole of pinsync on one machine, with nothing
// installed: an embedded Kafka broker (kfake, over TCP on 127.0.0.1), the
// Pinterest sandbox (over HTTP on 127.0.0.1), a generated Segment Engage
// stream produced with murmur2 partitioning, and several replicas of the
// real service (service.Run) in one consumer group. It then checks every
// Pinterest list against the oracle computed from the same records.
//
// It does not print anything but progress lines: rendering the verdict is
// the caller's (cmd/pinsync demo). It is not a load test: the sandbox and
// the broker share the process and its CPUs with pinsync.
package demo

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/pinsync/pinsync/schemas/stream"
)

// Topic is the input topic the demo creates and pinsync consumes.
const Topic = "pinsync.events"

// Group is the consumer group of the demo's replicas.
const Group = "pinsync"

// Defaults for the zero fields of Config.
const (
	DefaultProfiles        = 20_000
	DefaultAudiences       = 12
	DefaultEvents          = 200_000
	DefaultSeed            = 1
	DefaultReplicas        = 2
	DefaultPartitions      = 12
	DefaultWritesPerMinute = 2400
	DefaultFlushInterval   = time.Second
	DefaultTimeout         = 2 * time.Minute
	DefaultLogLevel        = "warn"
)

// Config says what to run. The zero value of a field means its default.
type Config struct {
	// Profiles, Audiences, Events and Seed shape the generated stream.
	Profiles, Audiences, Events int
	Seed                        uint64
	// MalformedFraction is the share of malformed records; zero means the
	// generator's default (0.1%), stream.None means none.
	MalformedFraction float64
	// Replicas is the number of pinsync instances in the consumer group.
	Replicas int
	// Partitions of the input topic.
	Partitions int
	// WritesPerMinute is the group's Pinterest ads_write budget
	// (pinterest.writes_per_minute), which the replicas share; the sandbox
	// enforces it, as Pinterest enforces one budget per app and user.
	WritesPerMinute float64
	// FlushInterval is sync.flush_interval.
	FlushInterval time.Duration
	// Timeout bounds Wait, from Start.
	Timeout time.Duration
	// Progress receives one line a second while Wait runs; nil discards.
	Progress io.Writer
	// Log receives the replicas' JSON logs at LogLevel; nil discards.
	Log      io.Writer
	LogLevel string
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Profiles, DefaultProfiles)
	def(&c.Audiences, DefaultAudiences)
	def(&c.Events, DefaultEvents)
	def(&c.Replicas, DefaultReplicas)
	def(&c.Partitions, DefaultPartitions)
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.WritesPerMinute == 0 {
		c.WritesPerMinute = DefaultWritesPerMinute
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = DefaultFlushInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// streamConfig is the generator's configuration.
func (c Config) streamConfig() stream.Config {
	return stream.Config{
		Profiles: c.Profiles, Audiences: c.Audiences, Events: c.Events, Seed: c.Seed,
		MalformedFraction: c.MalformedFraction,
	}
}

// Validate reports every invalid field, naming its flag.
func (c Config) Validate() error {
	d := c.withDefaults()
	var errs []error
	bad := func(flag, format string, a ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, a...)))
	}
	if d.Replicas < 1 || d.Replicas > 16 {
		bad("replicas", "must be between 1 and 16, got %d", d.Replicas)
	}
	if d.Partitions < 1 || d.Partitions > 1000 {
		bad("partitions", "must be between 1 and 1000, got %d", d.Partitions)
	}
	if d.Events > 10_000_000 {
		bad("events", "at most 10000000 (the broker keeps every record in memory), got %d", d.Events)
	}
	if math.IsNaN(d.WritesPerMinute) || d.WritesPerMinute < 1 {
		bad("writes-per-minute", "must be at least 1, got %v", d.WritesPerMinute)
	}
	if d.FlushInterval < 10*time.Millisecond {
		bad("flush-interval", "must be at least 10ms, got %s", d.FlushInterval)
	}
	if d.Timeout < 0 {
		bad("timeout", "must not be negative")
	}
	switch strings.ToLower(d.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "must be debug, info, warn or error, got %q", d.LogLevel)
	}
	if err := d.streamConfig().Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
