package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/overview"
	"github.com/pinsync/pinsync/consumer"
	"github.com/pinsync/pinsync/control"
	"github.com/pinsync/pinsync/pinterest"
	"github.com/pinsync/pinsync/schemas/format"
)

// Options are what Run takes besides the configuration; all optional.
type Options struct {
	// Logger receives logs; nil means JSON on stderr at the configured level.
	Logger *slog.Logger
	// Registry receives metrics; nil means a new registry with the Go and
	// process collectors.
	Registry *prometheus.Registry
	// Listener serves HTTP instead of listening on http.listen.
	Listener net.Listener
	// HTTPClient talks to Pinterest (tests route it through a validator).
	HTTPClient *http.Client
	// TokenStore overrides the configured token store.
	TokenStore pinterest.TokenStore
	// Started is called once the HTTP server listens, with its address.
	Started func(addr string)
	// Getenv reads the environment (the token store key); nil means
	// os.Getenv.
	Getenv func(string) string
}

// NewLogger returns the JSON logger for a level name.
func NewLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// Run runs pinsync until ctx ends, then shuts down in order: the engine
// stops fetching, flushes within the grace period, commits and leaves the
// group; then the HTTP server stops.
func Run(ctx context.Context, cfg Config, o Options) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := o.Logger
	if log == nil {
		log = NewLogger(os.Stderr, cfg.Log.Level)
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	kopts, err := KafkaOptions(cfg.Kafka, log)
	if err != nil {
		return err
	}
	leave, err := leaveDecider(cfg.Kafka.LeaveOnShutdown, log)
	if err != nil {
		return err
	}
	var ctl *control.Topic
	if controlTopic(cfg) != "-" {
		if ctl, err = control.Open(ctx, control.Config{Kafka: kopts, Topic: controlTopic(cfg), Logger: log.With("component", "control")}); err != nil {
			return err
		}
		defer ctl.Close()
	}
	store := o.TokenStore
	if store == nil {
		getenv := o.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		if store, err = tokenStore(cfg, ctl, getenv); err != nil {
			return err
		}
	}
	userAgent := "pinsync"
	if cfg.Kafka.InstanceID != "" {
		userAgent += " (instance " + cfg.Kafka.InstanceID + ")"
	}
	pin, err := pinterest.New(pinterest.Config{
		BaseURL: cfg.Pinterest.BaseURL, AuthURL: cfg.Pinterest.AuthURL,
		AppID: cfg.Pinterest.AppID, AppSecret: pinterest.Secret(cfg.Pinterest.AppSecret),
		TokenStore: store, HTTPClient: o.HTTPClient,
		WritesPerMinute: cfg.Pinterest.WritesPerMinute, ReadsPerMinute: cfg.Pinterest.ReadsPerMinute,
		MaxRecords: cfg.Pinterest.MaxRecords, MaxBytes: cfg.Pinterest.MaxBytes,
		BreakerFailures: cfg.Pinterest.BreakerFailures, BreakerOpenTimeout: time.Duration(cfg.Pinterest.BreakerOpenTimeout),
		UserAgent: userAgent, Logger: log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	deps := consumer.Deps{
		Kafka: kopts, Pinterest: pin, Writes: pin.WriteBudget(), Reads: pin.ReadBudget(),
		Logger: log, Registerer: reg, Leave: leave,
		// Nothing read while Pinterest refuses the credentials could be
		// uploaded: both stages stop fetching until `pinsync auth`.
		Hold: pin.Credentials,
	}
	if ctl != nil {
		deps.Registry, deps.Layout, deps.Loans = ctl.Registry(), ctl, ctl
	}
	if cfg.Kafka.InputFormat.Kind.Registered() {
		rc := cfg.Kafka.SchemaRegistry.Registry()
		if deps.SchemaRegistry, err = format.NewRegistry(rc); err != nil {
			return err
		}
		log.Info("input format", "kind", cfg.Kafka.InputFormat.Kind, "schema_registry", rc)
	} else {
		log.Info("input format", "kind", cmpOr(string(cfg.Kafka.InputFormat.Kind), string(format.JSON)))
	}
	eng, err := consumer.New(cfg.Engine(), deps)
	if err != nil {
		return err
	}
	ln := o.Listener
	if ln == nil && cfg.HTTP.Listen != "" {
		if ln, err = net.Listen("tcp", cfg.HTTP.Listen); err != nil {
			return fmt.Errorf("http.listen: %w", err)
		}
	}
	var srv *http.Server
	srvDone := make(chan error, 1)
	withdraw := func() {}
	if ln != nil {
		var group GroupView
		var base string
		if ctl != nil {
			if base, err = advertisedURL(cfg.HTTP.Advertise, ln.Addr().String(), os.Hostname); err != nil {
				return fmt.Errorf("http.advertise: %w", err)
			}
			adm, err := kgo.NewClient(kopts...)
			if err != nil {
				return err
			}
			defer adm.Close()
			group = groupView(cfg, ctl, kadm.NewClient(adm))
		}
		srv = &http.Server{Handler: Handler(eng, pin, reg, group), ReadHeaderTimeout: 10 * time.Second}
		go func() { srvDone <- srv.Serve(ln) }()
		log.Info("http server listening", "addr", ln.Addr().String())
		if o.Started != nil {
			o.Started(ln.Addr().String())
		}
		if ctl != nil {
			withdraw = announce(ctl, instanceName(cfg, base), base, log.With("component", "control"))
		}
	}
	runErr := eng.Run(ctx)
	withdraw()
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		if err := <-srvDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			runErr = errors.Join(runErr, err)
		}
	}
	return runErr
}

// groupView gathers the deployment of cfg for the group page.
func groupView(cfg Config, ctl *control.Topic, adm *kadm.Client) GroupView {
	ec := cfg.Engine().WithDefaults()
	return func(ctx context.Context) (overview.Overview, error) {
		return overview.Gather(ctx, overview.Sources{Admin: adm, Control: ctl, Group: ec.Group, Input: ec.ProfileTopic(), Changes: ec.ChangesTopic})
	}
}

// A process finds the others through the control topic: each announces
// there where its HTTP server is reached (control.Instance), at start and
// every control.AnnounceInterval, and withdraws at a clean stop. The
// groups cannot say it: a member's metadata is the consumer's, and the
// broker knows its client's address but not the port it serves HTTP on
// (nor the address it is reached at behind NAT). Announcements from a
// process that died without withdrawing expire (control.InstanceExpiry),
// and the first process to start after a day forgets them.

// forgetAfter is how long an instance not seen is kept in the control
// topic before a starting process withdraws it.
const forgetAfter = 24 * time.Hour

// announce records this process (name, reached at base) in the control
// topic now and every control.AnnounceInterval, until the returned func is
// called: it then withdraws the record, within a few seconds. Failures are
// logged: an instance that cannot announce itself still syncs.
func announce(ctl *control.Topic, name, base string, log *slog.Logger) (withdraw func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	started := time.Now()
	go func() {
		defer close(done)
		if n, err := ctl.ForgetInstances(ctx, started.Add(-forgetAfter)); err != nil {
			log.Warn("forgetting instances not seen for a day", "err", err)
		} else if n > 0 {
			log.Info("forgot instances not seen for a day", "count", n)
		}
		t := time.NewTicker(control.AnnounceInterval)
		defer t.Stop()
		for {
			actx, acancel := context.WithTimeout(ctx, 30*time.Second)
			err := ctl.Announce(actx, control.Instance{Name: name, URL: base, Started: started, Seen: time.Now()})
			acancel()
			if err != nil && ctx.Err() == nil {
				log.Warn("announcing this instance in the control topic", "err", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		cancel()
		<-done
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer wcancel()
		if err := ctl.Withdraw(wctx, name); err != nil {
			log.Warn("withdrawing this instance from the control topic", "err", err)
		}
	}
}

// instanceName is the name a process announces itself under: its Kafka
// instance id, which the groups show too, or else its address.
func instanceName(cfg Config, advertised string) string {
	if cfg.Kafka.InstanceID != "" {
		return cfg.Kafka.InstanceID
	}
	u, err := url.Parse(advertised)
	if err != nil {
		return advertised
	}
	return u.Host
}

// advertisedURL is the base URL of this process's HTTP server for the
// others: http.advertise (a host, or host:port), else the address it
// listens on, the machine's hostname standing in for an unspecified host
// (":8080" listens on every address).
func advertisedURL(advertise, listening string, hostname func() (string, error)) (string, error) {
	host, port, err := net.SplitHostPort(listening)
	if err != nil {
		return "", err
	}
	if advertise != "" {
		if h, p, err := net.SplitHostPort(advertise); err == nil {
			host, port = h, p
		} else {
			host = advertise
		}
	} else if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, err = hostname(); err != nil {
			return "", fmt.Errorf("no http.advertise, and no hostname to stand for %q: %w", listening, err)
		}
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

// controlTopic is the configured control topic, with its default (the
// engine's).
func controlTopic(cfg Config) string {
	return cfg.Engine().WithDefaults().ControlTopic
}

// tokenStore builds the configured token store (pinterest.token_store) on
// the control topic ctl (nil when disabled). Kind kafka shares the token
// between the replicas through the control topic, encrypted under the key
// (32 bytes, standard base64) in the environment variable named by
// key_env.
func tokenStore(cfg Config, ctl *control.Topic, getenv func(string) string) (pinterest.TokenStore, error) {
	c := cfg.Pinterest.TokenStore
	switch c.Kind {
	case "file", "":
		return pinterest.NewFileTokenStore(c.Path), nil
	case "kafka":
		if ctl == nil {
			return nil, errors.New("pinterest.token_store.kind kafka needs the control topic, but kafka.control_topic is \"-\"")
		}
		key, err := control.KeyFromEnv(getenv, c.KeyEnv)
		if err != nil {
			return nil, err
		}
		s, err := ctl.TokenStore(key)
		if err != nil {
			return nil, fmt.Errorf("pinterest.token_store: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("pinterest.token_store.kind %q is not supported", c.Kind)
}

// OpenTokenStore builds the configured token store of any kind and the func
// that closes it, for the commands that need only the token (pinsync
// auth, pinsync accounts).
func OpenTokenStore(ctx context.Context, cfg Config, getenv func(string) string, log *slog.Logger) (pinterest.TokenStore, func(), error) {
	if cfg.Pinterest.TokenStore.Kind != "kafka" {
		s, err := tokenStore(cfg, nil, getenv)
		return s, func() {}, err
	}
	kopts, err := KafkaOptions(cfg.Kafka, log)
	if err != nil {
		return nil, nil, err
	}
	if _, err := control.KeyFromEnv(getenv, cfg.Pinterest.TokenStore.KeyEnv); err != nil {
		return nil, nil, err
	}
	ctl, err := control.Open(ctx, control.Config{Kafka: kopts, Topic: controlTopic(cfg), Logger: log.With("component", "control")})
	if err != nil {
		return nil, nil, fmt.Errorf("pinterest.token_store: %w", err)
	}
	s, err := tokenStore(cfg, ctl, getenv)
	if err != nil {
		ctl.Close()
		return nil, nil, err
	}
	return s, ctl.Close, nil
}

// KafkaOptions turns the kafka section into franz-go connection options.
func KafkaOptions(c KafkaConfig, log *slog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(c.ClientID),
		kgo.WithLogger(kslog.New(log.With("component", "kafka"))),
	}
	if c.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(c.InstanceID))
	}
	if c.TLS.Enabled {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLS.InsecureSkipVerify} //nolint:gosec // operator's explicit choice
		if c.TLS.CAFile != "" {
			pem, err := os.ReadFile(c.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("kafka.tls.ca_file: no certificate found in %s", c.TLS.CAFile)
			}
			tc.RootCAs = pool
		}
		if c.TLS.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("kafka.tls.cert_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	switch strings.ToUpper(c.SASL.Mechanism) {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASL.Username, Pass: c.SASL.Password}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.Username, Pass: c.SASL.Password}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.Username, Pass: c.SASL.Password}.AsSha512Mechanism()))
	}
	return opts, nil
}
