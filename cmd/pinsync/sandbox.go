package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/pinsync/pinsync/pinterest/sandbox"
	"github.com/pinsync/pinsync/schemas/stream"
)

// runSandbox serves the fake Pinterest API of package pinterest/sandbox
// until ctx ends, so that pinsync can be run and tried without Pinterest.
// It prints the sandbox's own seeded credentials on purpose: they open
// nothing but this process.
func runSandbox(ctx context.Context, io *stdio, args []string) int {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(io.Err)
	fs.Usage = func() {
		fmt.Fprintln(io.Err, "usage: pinsync sandbox [flags]\n\nServes an in-memory fake of the Pinterest v5 Ads API (ad accounts, customer lists,\naudiences, OAuth) for development. State: GET /sandbox/v1/state.\n\nflags:")
		fs.PrintDefaults()
	}
	var accounts []sandbox.AdAccount
	fs.Func("ad-account", "ad account `ID[:ROLE,ROLE...]` the user can reach (repeatable; default "+
		sandbox.DefaultAdAccountID+":OWNER)", func(v string) error {
		id, roles, _ := strings.Cut(v, ":")
		a := sandbox.AdAccount{ID: id}
		if roles != "" {
			a.Permissions = strings.Split(roles, ",")
		}
		accounts = append(accounts, a)
		return nil
	})
	var (
		listen       = fs.String("listen", "127.0.0.1:8780", "address to listen on (port 0 picks a free one)")
		appID        = fs.String("app-id", sandbox.DefaultAppID, "app id the token endpoint accepts")
		appSecret    = fs.String("app-secret", sandbox.DefaultAppSecret, "app secret the token endpoint accepts")
		refreshToken = fs.String("refresh-token", sandbox.DefaultRefreshToken, "seeded refresh token")
		accessToken  = fs.String("access-token", "", "seeded access token (default none)")
		tokenTTL     = fs.Duration("token-ttl", sandbox.DefaultAccessTokenTTL, "access token lifetime (expires_in)")
		grace        = fs.Duration("refresh-grace", sandbox.DefaultRefreshGrace, "how long a used refresh token keeps working")
		popFile      = fs.String("population", "", "file of the Pinterest users records can match: one a line, `email|idfa|maid<TAB>identifier` as a CDP holds it\n(default: the users among the profiles pinsync produce generates, see --population-profiles)")
		popProfiles  = fs.Int("population-profiles", stream.DefaultProfiles, "without --population: Pinterest users are a share of the first N profiles pinsync produce generates (any seed, default profile prefix)")
		popShare     = fs.Float64("population-share", stream.DefaultPopulationShare, "without --population: the share of those profiles that are Pinterest users (0..1)")
		writes       = fs.Int("writes-per-minute", sandbox.DefaultWritesPerMinute, "ads_write budget per minute (0 = unlimited)")
		reads        = fs.Int("reads-per-minute", sandbox.DefaultReadsPerMinute, "ads_read budget per minute (0 = unlimited)")
		maxRecords   = fs.Int("max-records", sandbox.DefaultMaxRecords, "records per customer-list request before 413")
		maxBytes     = fs.Int64("max-bytes", sandbox.DefaultMaxBytes, "bytes per request body before 413")
		errorRate    = fs.Float64("error-rate", 0, "fraction of API calls answered with --error-status")
		errorStatus  = fs.Int("error-status", 500, "status of injected errors (5xx)")
		latency      = fs.Duration("latency", 0, "latency added to every /v5 request")
		seed         = fs.Uint64("seed", sandbox.DefaultSeed, "seed of the injected-error PRNG")
		verbose      = fs.Bool("v", false, "log every request to stderr")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(io.Err, "sandbox: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *popShare < 0 || *popShare > 1 || *popProfiles < 1 || *writes < 0 || *reads < 0 {
		fmt.Fprintln(io.Err, "sandbox: --population-share must be in [0,1], --population-profiles >= 1, --writes-per-minute and --reads-per-minute >= 0")
		return 2
	}
	population, from, err := sandboxPopulation(*popFile, *popProfiles, *popShare)
	if err != nil {
		fmt.Fprintln(io.Err, "sandbox:", err)
		return 2
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	cfg := sandbox.Config{
		AdAccounts: accounts, AppID: *appID, AppSecret: *appSecret,
		RefreshToken: *refreshToken, AccessToken: *accessToken,
		AccessTokenTTL: *tokenTTL, RefreshGrace: *grace, Population: population,
		WritesPerMinute: unlimitedIfZero(*writes), ReadsPerMinute: unlimitedIfZero(*reads),
		MaxRecords: *maxRecords, MaxBytes: *maxBytes, Seed: *seed,
		Faults: sandbox.Faults{ErrorRate: *errorRate, ErrorStatus: *errorStatus, Latency: *latency},
		Logger: slog.New(slog.NewTextHandler(io.Err, &slog.HandlerOptions{Level: level})),
	}
	if *grace == 0 {
		cfg.RefreshGrace = -1
	}
	srv, err := sandbox.New(cfg)
	if err != nil {
		fmt.Fprintln(io.Err, "sandbox:", err)
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(io.Err, "sandbox:", err)
		return 1
	}
	base := "http://" + ln.Addr().String()
	printSandboxBanner(io, base, cfg, accounts, fmt.Sprintf("%d Pinterest users %s", len(population), from))

	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	select {
	case err := <-done:
		fmt.Fprintln(io.Err, "sandbox:", err)
		return 1
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		fmt.Fprintln(io.Err, "sandbox: shutdown:", err)
		return 1
	}
	<-done
	return 0
}

// sandboxPopulation reads the population file, or makes the default one
// from the stream generator; it says where the users came from.
func sandboxPopulation(file string, profiles int, share float64) ([]sandbox.User, string, error) {
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, "", err
		}
		defer f.Close()
		users, err := sandbox.ReadPopulation(f)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", file, err)
		}
		return users, "from " + file, nil
	}
	gen, err := stream.New(stream.Config{Profiles: profiles, Seed: 1})
	if err != nil {
		return nil, "", err
	}
	var users []sandbox.User
	for _, u := range gen.Population(share) {
		users = append(users, sandbox.User{Type: u.Type, ID: u.ID})
	}
	return users, fmt.Sprintf("(%.0f%% of the %d profiles pinsync produce generates)", 100*share, profiles), nil
}

func unlimitedIfZero(n int) int {
	if n == 0 {
		return sandbox.Unlimited
	}
	return n
}

func printSandboxBanner(io *stdio, base string, cfg sandbox.Config, accounts []sandbox.AdAccount, population string) {
	w := io.Out
	fmt.Fprintf(w, "listening on %s\n", base)
	fmt.Fprintln(w, "pinsync sandbox: a fake Pinterest API for development; the credentials below open only this process.")
	fmt.Fprintf(w, "  base_url       %s\n", base)
	fmt.Fprintf(w, "  auth_url       %s/oauth/\n", base)
	fmt.Fprintf(w, "  token_url      %s/v5/oauth/token\n", base)
	fmt.Fprintf(w, "  app_id         %s\n", cfg.AppID)
	fmt.Fprintf(w, "  app_secret     %s\n", cfg.AppSecret)
	fmt.Fprintf(w, "  refresh_token  %s\n", cfg.RefreshToken)
	if cfg.AccessToken != "" {
		fmt.Fprintf(w, "  access_token   %s\n", cfg.AccessToken)
	}
	if len(accounts) == 0 {
		accounts = []sandbox.AdAccount{{ID: sandbox.DefaultAdAccountID, Permissions: []string{"OWNER"}}}
	}
	for _, a := range accounts {
		roles := "OWNER"
		if len(a.Permissions) > 0 {
			roles = strings.Join(a.Permissions, ",")
		}
		fmt.Fprintf(w, "  ad_account     %s (%s)\n", a.ID, roles)
	}
	fmt.Fprintf(w, "  population     %s\n", population)
	fmt.Fprintf(w, "  state          %s/sandbox/v1/state\n", base)
}
