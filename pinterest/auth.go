package pinterest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// scopes are what pinsync asks for. Pinterest separates scopes with commas,
// while x/oauth2 joins Config.Scopes with spaces, so they travel as one
// pre-joined element.
const scopes = "ads:read,ads:write"

const (
	// maxRefreshAhead is the longest a token is refreshed before it expires.
	maxRefreshAhead = 5 * time.Minute
	// refreshTimeout bounds one token request. The request is not cancelled
	// with the caller's context: a refresh abandoned after Pinterest rotated
	// the refresh token, but before the new one was saved, would leave the
	// store holding a dead token.
	refreshTimeout = 30 * time.Second
)

// tokens hands out access tokens, refreshing them from the stored refresh
// token ahead of expiry or when Pinterest answers 401. One refresh runs at a
// time; every new token is saved before it is used.
type tokens struct {
	conf  oauth2.Config
	store TokenStore
	hc    *http.Client
	now   func() time.Time
	log   *slog.Logger
	m     *metrics

	sem chan struct{} // held while loading or refreshing; guards unsaved

	cur      atomic.Pointer[oauth2.Token] // the token in use (saved)
	rejected atomic.Pointer[rejection]    // set once credentials are rejected for good
	unsaved  *oauth2.Token                // refreshed but not yet saved
}

type rejection struct {
	err          *AuthError
	refreshToken string // the rejected one; a different stored one clears the rejection
}

func newTokens(cfg *Config, hc *http.Client, m *metrics, log *slog.Logger) *tokens {
	return &tokens{
		conf: oauth2.Config{
			ClientID:     cfg.AppID,
			ClientSecret: string(cfg.AppSecret),
			Endpoint: oauth2.Endpoint{
				AuthURL:   cfg.AuthURL,
				TokenURL:  cfg.BaseURL + "/v5/oauth/token",
				AuthStyle: oauth2.AuthStyleInHeader,
			},
			Scopes: []string{scopes},
		},
		store: cfg.TokenStore,
		hc:    hc,
		now:   cfg.Now,
		log:   log,
		m:     m,
		sem:   make(chan struct{}, 1),
	}
}

// refreshAhead is how long before expiry a token is replaced: 10% of its
// lifetime, at most maxRefreshAhead.
func refreshAhead(t *oauth2.Token) time.Duration {
	if t.ExpiresIn > 0 {
		return min(maxRefreshAhead, time.Duration(t.ExpiresIn)*time.Second/10)
	}
	return maxRefreshAhead
}

// fresh reports whether t needs no refresh yet.
func (a *tokens) fresh(t *oauth2.Token) bool {
	return t != nil && t.AccessToken != "" &&
		(t.Expiry.IsZero() || a.now().Before(t.Expiry.Add(-refreshAhead(t))))
}

// usable reports whether t has not expired, even if it is due for refresh.
func (a *tokens) usable(t *oauth2.Token) bool {
	return t != nil && t.AccessToken != "" && (t.Expiry.IsZero() || a.now().Before(t.Expiry))
}

// token returns an access token to use now.
func (a *tokens) token(ctx context.Context) (*oauth2.Token, error) {
	cur := a.cur.Load()
	if a.fresh(cur) && a.rejected.Load() == nil {
		return cur, nil
	}
	stale := ""
	if cur != nil {
		stale = cur.AccessToken
	}
	t, err := a.refresh(ctx, stale)
	if err != nil {
		var ae *AuthError
		if !errors.As(err, &ae) && ctx.Err() == nil && a.usable(cur) {
			// A refresh ahead of expiry failed for now; the current
			// token still works and the next call tries again.
			a.log.WarnContext(ctx, "token refresh ahead of expiry failed; using current token", "err", err, "expiry", cur.Expiry)
			return cur, nil
		}
		return nil, err
	}
	return t, nil
}

// refresh replaces the access token stale (empty: none yet) unless another
// goroutine already did, and returns the token to use.
func (a *tokens) refresh(ctx context.Context, stale string) (*oauth2.Token, error) {
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("pinterest: waiting for token refresh: %w", context.Cause(ctx))
	}
	defer func() { <-a.sem }()

	if cur := a.cur.Load(); cur != nil && cur.AccessToken != stale && a.fresh(cur) && a.rejected.Load() == nil {
		return cur, nil // refreshed by someone else meanwhile
	}
	if a.unsaved != nil {
		// An earlier refresh rotated the token but could not save it.
		if err := a.save(ctx, a.unsaved); err != nil {
			return nil, err
		}
		t := a.unsaved
		a.unsaved = nil
		a.publish(t)
		if a.fresh(t) {
			return t, nil
		}
	}
	if l, ok := a.store.(RefreshLocker); ok {
		unlock, err := l.LockRefresh(ctx)
		if err != nil {
			return nil, fmt.Errorf("pinterest: token refresh lock: %w", err)
		}
		defer unlock()
	}
	stored, err := a.store.Load(ctx)
	switch {
	case errors.Is(err, ErrNoToken):
		return nil, a.reject("", &AuthError{Reason: "no token in the token store", Err: err})
	case err != nil:
		return nil, fmt.Errorf("pinterest: load token: %w", err)
	}
	if r := a.rejected.Load(); r != nil {
		if stored.RefreshToken == r.refreshToken {
			return nil, r.err
		}
		a.log.InfoContext(ctx, "new token found in the token store; clearing the credentials rejection")
		a.rejected.Store(nil)
		a.m.credsRejected.Set(0)
	}
	// Another process sharing the store may have refreshed already.
	if stored.AccessToken != stale && a.fresh(stored) {
		a.publish(stored)
		return stored, nil
	}
	if stored.RefreshToken == "" {
		return nil, a.reject("", &AuthError{Reason: "the stored token has no refresh token"})
	}
	return a.refreshWith(ctx, stored.RefreshToken)
}

// refreshWith runs the refresh grant. Called with a.sem held.
func (a *tokens) refreshWith(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	hctx, cancel := context.WithTimeout(context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, a.hc), refreshTimeout)
	defer cancel()
	t, err := a.conf.TokenSource(hctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		a.m.refreshes.WithLabelValues("error").Inc()
		err = a.classify("token refresh", err)
		var ae *AuthError
		if errors.As(err, &ae) {
			return nil, a.reject(refreshToken, ae)
		}
		a.log.WarnContext(ctx, "token refresh failed", "err", err)
		return nil, err
	}
	if t.RefreshToken == "" {
		// Pinterest always rotates; keep the old one if it ever does not.
		t.RefreshToken = refreshToken
	}
	if t.Extra("refresh_token_expires_at") == nil {
		a.log.WarnContext(ctx, "token refresh response has no refresh_token_expires_at; an app created before 2025-09-25 may need continuous refresh enabled")
	}
	a.fixExpiry(t)
	if err := a.save(ctx, t); err != nil {
		a.unsaved = t
		a.m.refreshes.WithLabelValues("error").Inc()
		return nil, err
	}
	a.m.refreshes.WithLabelValues("ok").Inc()
	a.publish(t)
	a.log.InfoContext(ctx, "access token refreshed", "expiry", t.Expiry)
	return t, nil
}

// classify turns a token-endpoint failure into an *AuthError (rejected for
// good), an *Error (retryable status) or a transport error.
func (a *tokens) classify(what string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil {
		e := errorFromBody(re.Response.StatusCode, re.Response.Header, re.Body, a.now())
		if e.Message == "" && re.ErrorCode != "" {
			e.Message = re.ErrorCode
		}
		if e.Retryable() {
			return fmt.Errorf("pinterest: %s: %w", what, e)
		}
		return &AuthError{Reason: what + " refused", Err: e}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("pinterest: %s: %w", what, &transportError{err: ue.Err})
	}
	return fmt.Errorf("pinterest: %s: %w", what, err)
}

// fixExpiry recomputes Expiry with the client's clock: x/oauth2 uses
// time.Now, which an injected clock does not govern.
func (a *tokens) fixExpiry(t *oauth2.Token) {
	if t.ExpiresIn > 0 {
		t.Expiry = a.now().Add(time.Duration(t.ExpiresIn) * time.Second)
	}
}

// save persists t with a context the caller cannot cancel midway.
func (a *tokens) save(ctx context.Context, t *oauth2.Token) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	if err := a.store.Save(sctx, t); err != nil {
		a.log.ErrorContext(ctx, "saving the rotated token failed; the new token is kept in memory and not used until saved", "err", err)
		return fmt.Errorf("pinterest: save rotated token: %w", err)
	}
	return nil
}

func (a *tokens) publish(t *oauth2.Token) {
	a.cur.Store(t)
	if !t.Expiry.IsZero() {
		a.m.tokenExpiry.Set(float64(t.Expiry.UnixNano()) / 1e9)
	}
}

func (a *tokens) reject(refreshToken string, e *AuthError) error {
	if old := a.rejected.Swap(&rejection{err: e, refreshToken: refreshToken}); old != nil {
		return e // already reported
	}
	a.m.credsRejected.Set(1)
	a.log.Error("Pinterest rejected pinsync's credentials; re-authorise with `pinsync auth`", "reason", e.Reason, "err", e.Err)
	return e
}

// exchange trades an authorization code for a token and saves it.
func (a *tokens) exchange(ctx context.Context, code, redirectURL string) (*oauth2.Token, error) {
	conf := a.conf
	conf.RedirectURL = redirectURL
	hctx := context.WithValue(ctx, oauth2.HTTPClient, a.hc)
	t, err := conf.Exchange(hctx, code)
	if err != nil {
		return nil, a.classify("authorization code exchange", err)
	}
	a.fixExpiry(t)
	select {
	case a.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	defer func() { <-a.sem }()
	if err := a.save(ctx, t); err != nil {
		return nil, err
	}
	a.unsaved = nil
	a.rejected.Store(nil)
	a.m.credsRejected.Set(0)
	a.publish(t)
	return t, nil
}
