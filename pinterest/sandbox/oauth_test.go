package sandbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/pinsync/pinsync/pinterest/sandbox"
)

func (e *env) oauthConfig(redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     sandbox.DefaultAppID,
		ClientSecret: sandbox.DefaultAppSecret,
		Endpoint: oauth2.Endpoint{AuthURL: e.ts.URL + "/oauth/", TokenURL: e.ts.URL + "/v5/oauth/token",
			AuthStyle: oauth2.AuthStyleInHeader},
		RedirectURL: redirect,
		Scopes:      []string{"ads:read,ads:write"},
	}
}

func (e *env) ctx() context.Context {
	return context.WithValue(context.Background(), oauth2.HTTPClient, e.ts.Client())
}

// refresh forces a refresh of rt and returns the new token.
func (e *env) refresh(rt string) (*oauth2.Token, error) {
	return e.oauthConfig("").TokenSource(e.ctx(), &oauth2.Token{RefreshToken: rt}).Token()
}

func wantInvalidGrant(t *testing.T, err error) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != 400 {
		t.Fatalf("want invalid_grant RetrieveError, got %v", err)
	}
}

func TestRefreshRotatesTokensWithGracePeriod(t *testing.T) {
	e := setup(t, sandbox.Config{AccessTokenTTL: time.Hour, RefreshGrace: 10 * time.Second})
	tok, err := e.refresh(sandbox.DefaultRefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == sandbox.DefaultRefreshToken || tok.RefreshToken == "" || tok.AccessToken == "" {
		t.Fatalf("refresh did not rotate: %+v", tok)
	}
	if got := tok.Expiry.Sub(time.Now()); got < 59*time.Minute || got > 61*time.Minute {
		t.Errorf("expires_in gives expiry in %v, want 1h", got)
	}
	for _, k := range []string{"refresh_token_expires_in", "refresh_token_expires_at", "scope"} {
		if tok.Extra(k) == nil {
			t.Errorf("refresh response lacks %s", k)
		}
	}
	if r := e.doToken(tok.AccessToken, "GET", "/v5/ad_accounts", nil); r.status != 200 {
		t.Errorf("new access token: %d", r.status)
	}
	e.clk.Advance(9 * time.Second)
	if _, err := e.refresh(sandbox.DefaultRefreshToken); err != nil {
		t.Errorf("old refresh token within grace: %v", err)
	}
	e.clk.Advance(time.Second)
	_, err = e.refresh(sandbox.DefaultRefreshToken)
	wantInvalidGrant(t, err)
	if _, err := e.refresh(tok.RefreshToken); err != nil {
		t.Errorf("rotated refresh token: %v", err)
	}
	e.clk.Advance(time.Hour)
	if r := e.doToken(tok.AccessToken, "GET", "/v5/ad_accounts", nil); r.status != 401 || r.code(t) != 2 {
		t.Errorf("expired access token: %d %s", r.status, r.body)
	}
}

func TestTokenEndpointRejectsBadClientAndRevokedTokens(t *testing.T) {
	e := setup(t, sandbox.Config{})
	bad := e.oauthConfig("")
	bad.ClientSecret = "wrong"
	_, err := bad.TokenSource(e.ctx(), &oauth2.Token{RefreshToken: sandbox.DefaultRefreshToken}).Token()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != 401 {
		t.Errorf("wrong secret: %v", err)
	}
	resp, err := e.ts.Client().Post(e.ts.URL+"/sandbox/v1/revoke", "application/json", strings.NewReader(`{"refresh_tokens":true}`))
	if err != nil || resp.StatusCode != 204 {
		t.Fatalf("revoke: %v %v", resp, err)
	}
	resp.Body.Close()
	_, err = e.refresh(sandbox.DefaultRefreshToken)
	wantInvalidGrant(t, err)
	if r := e.do("GET", "/v5/ad_accounts", nil); r.status != 200 {
		t.Errorf("access tokens survive a refresh-token revocation: %d", r.status)
	}
	e.s.Revoke(sandbox.Revocation{AccessTokens: true})
	if r := e.do("GET", "/v5/ad_accounts", nil); r.status != 401 {
		t.Errorf("revoked access token: %d", r.status)
	}
}

func TestAuthorizationCodeIsSingleUseAndBound(t *testing.T) {
	e := setup(t, sandbox.Config{})
	const redirect = "http://127.0.0.1:8085/callback"
	cfg := e.oauthConfig(redirect)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	authorize := func() string {
		t.Helper()
		resp, err := noFollow.Get(cfg.AuthCodeURL("st4te"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("authorize: %d", resp.StatusCode)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || !strings.HasPrefix(loc.String(), redirect+"?") || loc.Query().Get("state") != "st4te" {
			t.Fatalf("redirect %q", resp.Header.Get("Location"))
		}
		return loc.Query().Get("code")
	}
	code := authorize()
	tok, err := cfg.Exchange(e.ctx(), code)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.Extra("scope") != "ads:read,ads:write" {
		t.Errorf("exchange: refresh %q scope %v", tok.RefreshToken, tok.Extra("scope"))
	}
	_, err = cfg.Exchange(e.ctx(), code)
	wantInvalidGrant(t, err)
	other := e.oauthConfig("http://127.0.0.1:9999/elsewhere")
	_, err = other.Exchange(e.ctx(), authorize())
	wantInvalidGrant(t, err)
	if r := e.doToken(tok.AccessToken, "POST", listsPath(""), map[string]string{"name": "n", "records": hashOf(1)}); r.status != 201 {
		t.Errorf("token from code flow: %d %s", r.status, r.body)
	}

	readOnly := e.oauthConfig(redirect)
	readOnly.Scopes = []string{"ads:read"}
	resp, err := noFollow.Get(readOnly.AuthCodeURL("s"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	tok, err = readOnly.Exchange(e.ctx(), loc.Query().Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	if r := e.doToken(tok.AccessToken, "POST", listsPath(""), map[string]string{"name": "n", "records": hashOf(1)}); r.status != 401 || r.code(t) != 3 {
		t.Errorf("read-only token writing: %d %s", r.status, r.body)
	}
}

func TestAdminTokensEndpoint(t *testing.T) {
	e := setup(t, sandbox.Config{})
	resp, err := e.ts.Client().Post(e.ts.URL+"/sandbox/v1/tokens", "application/json", strings.NewReader(`{"scopes":["ads:read"]}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok sandbox.Tokens
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil {
		t.Fatal(err)
	}
	if tok.Scope != "ads:read" || tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Errorf("tokens %+v", tok)
	}
	if r := e.doToken(tok.AccessToken, "GET", listsPath(""), nil); r.status != 200 {
		t.Errorf("granted token: %d", r.status)
	}
}
