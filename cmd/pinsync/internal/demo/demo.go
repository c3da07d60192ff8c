package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// Demo is a running demo: broker, sandbox and replicas. Start it, Wait for
// the verdict, then Close it. Wait and Close must not be called
// concurrently.
type Demo struct {
	cfg     Config
	start   time.Time
	cluster *kfake.Cluster
	brokers []string
	admCl   *kgo.Client
	adm     *kadm.Client

	sb *sandbox.Server
	// population is who the sandbox matches.
	population []sandbox.User
	sbURL      string
	sbSrv      *http.Server
	sbDone     chan error

	dir      string
	cancel   context.CancelFunc // stops the replicas
	replicas []*replica
	closed   bool
}

// replica is one running service.Run.
type replica struct {
	reg  *prometheus.Registry
	addr string
	done chan error
}

// Start validates cfg, starts the broker, the sandbox and the replicas, and
// returns once every replica's HTTP server listens. The replicas run until
// Close, not until ctx ends; ctx bounds only the start.
func Start(ctx context.Context, cfg Config) (d *Demo, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d = &Demo{cfg: cfg, start: time.Now()}
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Close())
			d = nil
		}
	}()
	if d.cluster, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(cfg.Partitions), Topic)); err != nil {
		return d, fmt.Errorf("embedded kafka: %w", err)
	}
	d.brokers = d.cluster.ListenAddrs()
	if d.admCl, err = kgo.NewClient(kgo.SeedBrokers(d.brokers...)); err != nil {
		return d, fmt.Errorf("kafka admin client: %w", err)
	}
	d.adm = kadm.NewClient(d.admCl)
	if err := d.startSandbox(); err != nil {
		return d, err
	}
	if d.dir, err = os.MkdirTemp("", "pinsync-demo-"); err != nil {
		return d, err
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	log := service.NewLogger(cfg.Log, cfg.LogLevel)
	for i := range cfg.Replicas {
		if err := d.startReplica(ctx, runCtx, i+1, log); err != nil {
			return d, fmt.Errorf("replica %d: %w", i+1, err)
		}
	}
	return d, nil
}

// startSandbox serves the Pinterest sandbox on a 127.0.0.1 port. Its write
// budget is the group's: Pinterest counts one budget per app and user,
// whatever the number of processes, and the replicas share it. Its
// Pinterest users are a share of the stream's profiles, so that a list
// matches what Pinterest would match of it.
func (d *Demo) startSandbox() error {
	gen, err := stream.New(d.cfg.streamConfig())
	if err != nil {
		return err
	}
	for _, u := range gen.Population(stream.DefaultPopulationShare) {
		d.population = append(d.population, sandbox.User{Type: u.Type, ID: u.ID})
	}
	sb, err := sandbox.New(sandbox.Config{
		WritesPerMinute: int(d.cfg.WritesPerMinute),
		Population:      d.population,
	})
	if err != nil {
		return fmt.Errorf("pinterest sandbox: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("pinterest sandbox: %w", err)
	}
	d.sb, d.sbURL = sb, "http://"+ln.Addr().String()
	d.sbSrv = &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
	d.sbDone = make(chan error, 1)
	go func() { d.sbDone <- d.sbSrv.Serve(ln) }()
	return nil
}

// startReplica starts service.Run with a configuration as an operator would
// write it, pointed at the embedded broker and the sandbox.
func (d *Demo) startReplica(ctx, runCtx context.Context, n int, log *slog.Logger) error {
	cfg := service.Default()
	cfg.Kafka.Brokers = d.brokers
	cfg.Kafka.Topics = []string{Topic}
	cfg.Kafka.Group = Group
	cfg.Kafka.ClientID = "pinsync-demo-" + strconv.Itoa(n)
	cfg.Pinterest.BaseURL = d.sbURL
	cfg.Pinterest.AuthURL = d.sbURL + "/oauth/"
	cfg.Pinterest.AppID = sandbox.DefaultAppID
	cfg.Pinterest.AppSecret = sandbox.DefaultAppSecret
	cfg.Pinterest.AdAccountID = sandbox.DefaultAdAccountID
	cfg.Pinterest.TokenStore.Path = filepath.Join(d.dir, "token-"+strconv.Itoa(n)+".json")
	cfg.Pinterest.WritesPerMinute = d.cfg.WritesPerMinute
	cfg.Sync.FlushInterval = service.Duration(d.cfg.FlushInterval)
	cfg.Sync.ShutdownGrace = service.Duration(10 * time.Second)
	cfg.Sync.AudiencePollInterval = service.Duration(10 * time.Second)
	cfg.Log.Level = d.cfg.LogLevel

	// The sandbox's seeded refresh token, with an access token long
	// expired: the first call refreshes, as after `pinsync auth`.
	store := pinterest.NewFileTokenStore(cfg.Pinterest.TokenStore.Path)
	if err := store.Save(ctx, &oauth2.Token{RefreshToken: sandbox.DefaultRefreshToken, Expiry: time.Unix(1, 0)}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg.HTTP.Listen = ln.Addr().String()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r := &replica{reg: reg, addr: ln.Addr().String(), done: make(chan error, 1)}
	d.replicas = append(d.replicas, r)
	opts := service.Options{
		Logger:     log.With("replica", n),
		Registry:   reg,
		Listener:   ln,
		TokenStore: store,
	}
	go func() { r.done <- service.Run(runCtx, cfg, opts) }()
	return nil
}

// StatusURLs returns the status page of each replica, in order.
func (d *Demo) StatusURLs() []string {
	out := make([]string, len(d.replicas))
	for i, r := range d.replicas {
		out[i] = "http://" + r.addr + "/"
	}
	return out
}

// SandboxURL is the base URL of the Pinterest sandbox (its state is at
// /sandbox/v1/state).
func (d *Demo) SandboxURL() string { return d.sbURL }

// Brokers are the embedded broker's addresses.
func (d *Demo) Brokers() []string { return d.brokers }

// Config returns the demo's configuration with defaults filled in.
func (d *Demo) Config() Config { return d.cfg }

// PopulationSize is the number of Pinterest users the sandbox knows: every
// identifier of stream.DefaultPopulationShare of the stream's profiles.
func (d *Demo) PopulationSize() int { return len(d.population) }

// Close stops the replicas (each flushes, commits and leaves the group),
// then the sandbox and the broker, and removes the temporary directory. It
// is safe to call more than once.
func (d *Demo) Close() error {
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	if d.cancel != nil {
		d.cancel()
	}
	for i, r := range d.replicas {
		// service.Run bounds its own shutdown (grace, then HTTP).
		if err := <-r.done; err != nil {
			errs = append(errs, fmt.Errorf("replica %d: %w", i+1, err))
		}
	}
	if d.sbSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := d.sbSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("pinterest sandbox: %w", err))
		}
		cancel()
		if err := <-d.sbDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, fmt.Errorf("pinterest sandbox: %w", err))
		}
	}
	if d.admCl != nil {
		d.admCl.Close()
	}
	if d.cluster != nil {
		d.cluster.Close()
	}
	if d.dir != "" {
		if err := os.RemoveAll(d.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
