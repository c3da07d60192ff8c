package main

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/pinsync/pinsync/cmd/pinsync/internal/service"
	"github.com/pinsync/pinsync/pinterest"
)

// runAuth is `pinsync auth`: the OAuth 2.0 authorization-code flow that
// connects a Pinterest account. It prints (and opens) the consent page,
// waits for Pinterest to redirect the browser to a listener on this machine,
// checks the state, exchanges the code with the app's credentials and saves
// the token in the configured token store. It never prints a token.
func runAuth(ctx context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "auth", "usage: pinsync auth --config FILE [flags]\n\nConnects a Pinterest account: opens the consent page, waits for the redirect\nand saves the token in the configured token store.")
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML); only the pinterest section is needed; PINSYNC_PINTEREST_* variables override it")
	baseURL := fs.String("base-url", "", "Pinterest API origin (e.g. a `pinsync sandbox`); also sets the consent page to <base-url>/oauth/ unless --auth-url is given")
	authURL := fs.String("auth-url", "", "OAuth consent page (default pinterest.auth_url)")
	listen := fs.String("listen", "127.0.0.1:8085", "address the redirect listener binds")
	redirect := fs.String("redirect-uri", "", "redirect URI registered for the Pinterest app (default http://localhost:<listen port>/)")
	noBrowser := fs.Bool("no-browser", false, "print the consent URL but do not open a browser")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the browser to come back")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	if *timeout <= 0 {
		fmt.Fprintln(io.Err, "pinsync auth: --timeout must be positive")
		return 2
	}
	cfg, err := loadPinterestConfig(*path, io.Getenv, *baseURL, *authURL)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync auth: invalid configuration:\n%s\n", indent(err.Error()))
		return 2
	}
	pc := cfg.Pinterest
	store, closeStore, err := openTokenStore(ctx, io, cfg)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync auth: %v\n", err)
		return 2
	}
	defer closeStore()
	pin, err := newPinterestClient(pc, store)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync auth: %v\n", err)
		return 2
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync auth: --listen: %v\n", err)
		return 1
	}
	defer ln.Close()
	redirectURI := *redirect
	if redirectURI == "" {
		redirectURI = "http://localhost:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + "/"
	}
	ru, err := url.Parse(redirectURI)
	if err != nil || ru.Scheme != "http" || ru.Host == "" {
		fmt.Fprintf(io.Err, "pinsync auth: --redirect-uri %q is not an absolute http URL\n", redirectURI)
		return 2
	}
	state, err := randomState()
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync auth: %v\n", err)
		return 1
	}
	consent := pin.OAuth2Config(redirectURI).AuthCodeURL(state)

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	results := make(chan callbackResult, 1)
	srv := &http.Server{Handler: callbackHandler(ru.Path, state, results), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
	}()

	fmt.Fprintf(io.Out, "Open this URL in a browser, signed in to Pinterest as a user with access to the ad account, and allow pinsync:\n\n  %s\n\n", consent)
	fmt.Fprintf(io.Out, "Waiting up to %s for Pinterest to redirect to %s ...\n", *timeout, redirectURI)
	if !*noBrowser {
		openBrowser(consent)
	}

	var res callbackResult
	select {
	case res = <-results:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			fmt.Fprintf(io.Err, "pinsync auth: no answer from the browser within %s; run it again (--timeout to wait longer)\n", *timeout)
		} else {
			fmt.Fprintln(io.Err, "pinsync auth: interrupted")
		}
		return 1
	}
	if res.err != nil {
		fmt.Fprintf(io.Err, "pinsync auth: %v\n", res.err)
		return 1
	}
	tok, err := pin.Exchange(ctx, res.code, redirectURI)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync auth: %v\n", err)
		return 1
	}
	fmt.Fprintf(io.Out, "Connected. The token is saved in %s.\n", tokenStoreName(pc.TokenStore))
	if !tok.Expiry.IsZero() {
		fmt.Fprintf(io.Out, "The access token expires %s; pinsync refreshes it on its own.\n", tok.Expiry.Local().Format(time.RFC1123))
	}
	if at, ok := refreshExpiry(tok.Extra("refresh_token_expires_at")); ok {
		fmt.Fprintf(io.Out, "The refresh token expires %s unless pinsync uses it before then.\n", at.Local().Format(time.RFC1123))
	}
	fmt.Fprintln(io.Out, "Run `pinsync accounts` to see the ad accounts it reaches.")
	return 0
}

// callbackResult is what the redirect listener received: a code, or why
// there is none.
type callbackResult struct {
	code string
	err  error
}

// AuthDeniedError says the consent page answered with an OAuth error
// (for example the user clicked "Decline").
type AuthDeniedError struct {
	Code, Description string
}

// Error names the OAuth error the consent page returned.
func (e *AuthDeniedError) Error() string {
	msg := "Pinterest did not authorise pinsync: " + e.Code
	if e.Description != "" {
		msg += " (" + e.Description + ")"
	}
	return msg
}

// errStateMismatch means the redirect did not carry the state this run
// sent: it was not started by this consent page (a stale tab, or a forged
// request), so its code is not exchanged.
var errStateMismatch = errors.New("the redirect's state does not match the one this run sent; " +
	"it did not come from the consent page printed above, so its code was not used. Run `pinsync auth` again and use the new URL")

// callbackHandler serves the redirect URI's path. The first request that
// reaches it decides the outcome; it is sent on results (capacity 1).
func callbackHandler(path, state string, results chan<- callbackResult) http.Handler {
	if path == "" {
		path = "/"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query()
		var res callbackResult
		switch {
		case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1:
			res.err = errStateMismatch
		case q.Get("error") != "":
			res.err = &AuthDeniedError{Code: q.Get("error"), Description: q.Get("error_description")}
		case q.Get("code") == "":
			res.err = errors.New("the redirect carries neither a code nor an error")
		default:
			res.code = q.Get("code")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if res.err != nil {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "<!doctype html><title>pinsync</title><h1>pinsync was not connected</h1><p>%s</p>\n", html.EscapeString(res.err.Error()))
		} else {
			fmt.Fprint(w, "<!doctype html><title>pinsync</title><h1>pinsync received the authorisation</h1><p>You can close this tab; the terminal says whether the token was saved.</p>\n")
		}
		select {
		case results <- res:
		default: // a later request: the first one decided
		}
	})
}

// randomState returns 32 random bytes, URL-safe encoded.
func randomState() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random state: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// openBrowser opens u with xdg-open when there is one; the URL is printed
// either way, so failure is silent.
func openBrowser(u string) {
	p, err := exec.LookPath("xdg-open")
	if err != nil {
		return
	}
	cmd := exec.Command(p, u)
	if cmd.Start() == nil {
		go func() { _ = cmd.Wait() }()
	}
}

// refreshExpiry reads refresh_token_expires_at (Unix seconds) from a token
// response.
func refreshExpiry(v any) (time.Time, bool) {
	switch n := v.(type) {
	case float64:
		if n > 0 {
			return time.Unix(int64(n), 0), true
		}
	case string:
		if s, err := strconv.ParseInt(n, 10, 64); err == nil && s > 0 {
			return time.Unix(s, 0), true
		}
	}
	return time.Time{}, false
}

func tokenStoreName(c service.TokenStoreConfig) string {
	if c.Kind == "file" || c.Kind == "" {
		return c.Path + " (readable only by its owner)"
	}
	return "the " + c.Kind + " token store"
}

// newPinterestClient builds a client for the commands that talk to
// Pinterest outside the service: no metrics, no logs.
func newPinterestClient(pc service.PinterestConfig, store pinterest.TokenStore) (*pinterest.Client, error) {
	return pinterest.New(pinterest.Config{
		BaseURL: pc.BaseURL, AuthURL: pc.AuthURL,
		AppID: pc.AppID, AppSecret: pinterest.Secret(pc.AppSecret),
		TokenStore: store, WritesPerMinute: pc.WritesPerMinute,
	})
}

// loadPinterestConfig reads the configuration like `pinsync run` does but
// validates only the pinterest section (and the Kafka settings a kafka
// token store needs), so that an account can be connected before the rest
// is configured. baseURL and authURL override the file when set.
func loadPinterestConfig(path string, getenv func(string) string, baseURL, authURL string) (service.Config, error) {
	cfg, err := service.LoadUnvalidated(path, getenv)
	if err != nil {
		return cfg, err
	}
	p := &cfg.Pinterest
	if baseURL != "" {
		p.BaseURL = baseURL
		if authURL == "" {
			authURL = strings.TrimRight(baseURL, "/") + "/oauth/"
		}
	}
	if authURL != "" {
		p.AuthURL = authURL
	}
	return cfg, cfg.ValidatePinterest()
}

// openTokenStore opens the configured token store (file or kafka) for a
// command; the returned func closes it.
func openTokenStore(ctx context.Context, io *stdio, cfg service.Config) (pinterest.TokenStore, func(), error) {
	return service.OpenTokenStore(ctx, cfg, io.Getenv, slog.New(slog.DiscardHandler))
}
