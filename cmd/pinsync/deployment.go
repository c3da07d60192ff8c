package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/control"
)

// deployment is what the operator commands (layout, resync, status, dlq)
// work on: a running deployment's configuration and the options to reach
// its Kafka.
type deployment struct {
	name  string // the command, for its messages
	cfg   service.Config
	ec    consumer.Config // with its defaults
	kopts []kgo.Opt
}

// loadDeployment loads the configuration at path for the command name;
// when it cannot, it says why and returns nil and exit status 2.
func loadDeployment(io *stdio, name, path string) (*deployment, int) {
	cfg, err := service.Load(path, io.Getenv)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync %s: invalid configuration:\n%s\n", name, indent(err.Error()))
		return nil, 2
	}
	kopts, err := service.KafkaOptions(cfg.Kafka, slog.New(slog.DiscardHandler))
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync %s: %v\n", name, err)
		return nil, 2
	}
	return &deployment{name: name, cfg: cfg, ec: cfg.Engine().WithDefaults(), kopts: kopts}, 0
}

// openControl opens the deployment's control topic; without one
// (kafka.control_topic "-") it says why the command needs it (without
// says what cannot be done) and returns exit status 2, and 1 when the
// topic cannot be opened.
func (d *deployment) openControl(ctx context.Context, io *stdio, without string) (*control.Topic, int) {
	if d.ec.ControlTopic == "-" {
		fmt.Fprintf(io.Err, "pinsync %s: kafka.control_topic is \"-\": %s\n", d.name, without)
		return nil, 2
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ct, err := control.Open(octx, control.Config{Kafka: d.kopts, Topic: d.ec.ControlTopic})
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync %s: %v\n", d.name, err)
		return nil, 1
	}
	return ct, 0
}
