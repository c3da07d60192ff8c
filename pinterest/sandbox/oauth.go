package sandbox

import (
	"crypto/subtle"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

type accessToken struct {
	user    string
	scopes  []string
	expires time.Time
}

type refreshToken struct {
	user    string
	scopes  []string
	expires time.Time
	// rotated is when the token was used; it keeps working until
	// rotated+RefreshGrace.
	rotated time.Time
}

type authCode struct {
	redirectURI string
	scopes      []string
	expires     time.Time
}

// authCodeTTL is how long an authorization code can be exchanged.
const authCodeTTL = 10 * time.Minute

// authenticateLocked checks the bearer token and its scope. It returns the
// user, or an error status, code and message.
func (s *Server) authenticateLocked(r *http.Request, scope string, now time.Time) (string, int, int, string) {
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", http.StatusUnauthorized, CodeAuthFailed, MessageAuthFailed
	}
	at := s.access[tok]
	if at == nil || !now.Before(at.expires) {
		return "", http.StatusUnauthorized, CodeAuthFailed, MessageAuthFailed
	}
	if !slices.Contains(at.scopes, scope) {
		return "", http.StatusUnauthorized, CodeScope, MessageScope
	}
	return at.user, 0, 0, ""
}

// oauthError is the body of a token-endpoint error: Pinterest's
// {"code","message"} plus the RFC 6749 "error" that golang.org/x/oauth2
// parses into RetrieveError.ErrorCode.
type oauthError struct {
	Code             int    `json:"code"`
	Message          string `json:"message"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

func writeOAuthError(w http.ResponseWriter, status, code int, oauthCode, msg string) {
	writeJSON(w, status, oauthError{Code: code, Message: msg, Error: oauthCode, ErrorDescription: msg})
}

// tokenResponse is OauthAccessTokenResponseRefresh / ...Code.
type tokenResponse struct {
	AccessToken           string `json:"access_token"`
	TokenType             string `json:"token_type"`
	ExpiresIn             int64  `json:"expires_in"`
	Scope                 string `json:"scope"`
	ResponseType          string `json:"response_type,omitempty"`
	RefreshToken          string `json:"refresh_token"`
	RefreshTokenExpiresIn int64  `json:"refresh_token_expires_in"`
	RefreshTokenExpiresAt int64  `json:"refresh_token_expires_at"`
}

// token is POST /v5/oauth/token.
func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if !s.delay(r.Context()) {
		writeError(w, http.StatusServiceUnavailable, http.StatusServiceUnavailable, "Request cancelled.")
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	f := s.injectedFaultLocked(now, false)
	s.mu.Unlock()
	if f.kind == faultOutage {
		writeError(w, http.StatusServiceUnavailable, http.StatusServiceUnavailable, "Service unavailable (sandbox outage).")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.cfg.AppID || subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.AppSecret)) != 1 {
		writeOAuthError(w, http.StatusUnauthorized, CodeAuthFailed, "invalid_client", MessageAuthFailed)
		return
	}
	mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	if !strings.EqualFold(strings.TrimSpace(mt), "application/x-www-form-urlencoded") {
		writeOAuthError(w, http.StatusBadRequest, CodeInvalid, "invalid_request", "Content-Type must be application/x-www-form-urlencoded.")
		return
	}
	body, err := readBody(r, 64<<10)
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, CodeInvalid, "invalid_request", "Could not read request body.")
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		writeOAuthError(w, http.StatusBadRequest, CodeInvalid, "invalid_request", "Malformed form body.")
		return
	}
	switch form.Get("grant_type") {
	case "refresh_token":
		s.refreshGrant(w, form, now)
	case "authorization_code":
		s.codeGrant(w, form, now)
	case "":
		writeOAuthError(w, http.StatusBadRequest, CodeInvalid, "invalid_request", "Missing grant_type.")
	default:
		writeOAuthError(w, http.StatusBadRequest, CodeInvalid, "unsupported_grant_type", "Unsupported grant_type.")
	}
}

func oauthErrBody(status, code int, oauthCode, msg string) (int, any) {
	return status, oauthError{Code: code, Message: msg, Error: oauthCode, ErrorDescription: msg}
}

func (s *Server) refreshGrant(w http.ResponseWriter, form url.Values, now time.Time) {
	rt := form.Get("refresh_token")
	if rt == "" {
		writeOAuthError(w, http.StatusBadRequest, CodeInvalid, "invalid_request", "Missing refresh_token.")
		return
	}
	s.respond(w, func() (int, any) {
		old := s.refresh[rt]
		if old == nil || !now.Before(old.expires) ||
			(!old.rotated.IsZero() && !now.Before(old.rotated.Add(s.cfg.RefreshGrace))) {
			return oauthErrBody(http.StatusBadRequest, CodeInvalid, "invalid_grant", "Invalid refresh token.")
		}
		scopes := old.scopes
		if sc := form.Get("scope"); sc != "" {
			req := splitScopes(sc)
			for _, x := range req {
				if !slices.Contains(old.scopes, x) {
					return oauthErrBody(http.StatusBadRequest, CodeInvalid, "invalid_scope", "Requested scope exceeds the granted scopes.")
				}
			}
			scopes = req
		}
		if old.rotated.IsZero() {
			old.rotated = now
		}
		return http.StatusOK, s.issueLocked(old.user, scopes, now, "refresh_token")
	})
}

func (s *Server) codeGrant(w http.ResponseWriter, form url.Values, now time.Time) {
	code, redirect := form.Get("code"), form.Get("redirect_uri")
	if code == "" || redirect == "" {
		writeOAuthError(w, http.StatusBadRequest, CodeInvalid, "invalid_request", "Missing code or redirect_uri.")
		return
	}
	s.respond(w, func() (int, any) {
		ac := s.codes[code]
		delete(s.codes, code) // single use, even when the exchange fails
		if ac == nil || !now.Before(ac.expires) || ac.redirectURI != redirect {
			return oauthErrBody(http.StatusBadRequest, CodeInvalid, "invalid_grant", "Invalid authorization code.")
		}
		return http.StatusOK, s.issueLocked(sandboxUser, ac.scopes, now, "authorization_code")
	})
}

// issueLocked creates a new access and refresh token pair.
func (s *Server) issueLocked(user string, scopes []string, now time.Time, responseType string) tokenResponse {
	at, rt := randomToken("pina."), randomToken("pinr.")
	scopes = slices.Clone(scopes)
	s.access[at] = &accessToken{user: user, scopes: scopes, expires: now.Add(s.cfg.AccessTokenTTL)}
	rtExp := now.Add(s.cfg.RefreshTokenTTL)
	s.refresh[rt] = &refreshToken{user: user, scopes: scopes, expires: rtExp}
	return tokenResponse{
		AccessToken:           at,
		TokenType:             "bearer",
		ExpiresIn:             int64(s.cfg.AccessTokenTTL / time.Second),
		Scope:                 strings.Join(scopes, ","),
		ResponseType:          responseType,
		RefreshToken:          rt,
		RefreshTokenExpiresIn: int64(s.cfg.RefreshTokenTTL / time.Second),
		RefreshTokenExpiresAt: rtExp.Unix(),
	}
}

// splitScopes accepts comma- or space-separated scopes.
func splitScopes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// authorize is GET /oauth/: it grants at once (there is no login page) and
// redirects to redirect_uri with code and state.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	fail := func(msg string) {
		writeError(w, http.StatusBadRequest, CodeInvalid, msg)
	}
	if q.Get("client_id") != s.cfg.AppID {
		fail("Unknown client_id.")
		return
	}
	if q.Get("response_type") != "code" {
		fail("response_type must be code.")
		return
	}
	redirect := q.Get("redirect_uri")
	u, err := url.Parse(redirect)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fail("Invalid redirect_uri.")
		return
	}
	if len(s.cfg.RedirectURIs) > 0 && !slices.Contains(s.cfg.RedirectURIs, redirect) {
		fail("redirect_uri is not registered for this app.")
		return
	}
	scopes := splitScopes(q.Get("scope"))
	if len(scopes) == 0 {
		fail("Missing scope.")
		return
	}
	for _, sc := range scopes {
		if !knownScopes[sc] {
			fail("Unknown scope.")
			return
		}
	}
	code := randomToken("")
	s.mu.Lock()
	s.codes[code] = &authCode{redirectURI: redirect, scopes: scopes, expires: s.cfg.Now().Add(authCodeTTL)}
	s.mu.Unlock()
	v := u.Query()
	v.Set("code", code)
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// Revocation says which tokens Revoke invalidates.
type Revocation struct {
	AccessTokens  bool `json:"access_tokens"`
	RefreshTokens bool `json:"refresh_tokens"`
}

// Revoke invalidates every issued (and seeded) token of the kinds asked,
// as when a user removes the app: refresh attempts then fail with
// invalid_grant and API calls with 401 code 2.
func (s *Server) Revoke(rv Revocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rv.AccessTokens {
		clear(s.access)
	}
	if rv.RefreshTokens {
		clear(s.refresh)
		clear(s.codes)
	}
}

// Tokens is a token pair issued by GrantTokens.
type Tokens struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	Scope        string    `json:"scope"`
	Expiry       time.Time `json:"expiry"`
}

// GrantTokens issues a fresh token pair with the given scopes (default
// ads:read and ads:write) without the OAuth dance, for tests.
func (s *Server) GrantTokens(scopes ...string) (Tokens, error) {
	for _, sc := range scopes {
		if !knownScopes[sc] {
			return Tokens{}, &unknownScopeError{scope: sc}
		}
	}
	if len(scopes) == 0 {
		scopes = []string{ScopeAdsRead, ScopeAdsWrite}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	tr := s.issueLocked(sandboxUser, scopes, now, "")
	return Tokens{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, Scope: tr.Scope,
		Expiry: now.Add(s.cfg.AccessTokenTTL)}, nil
}

type unknownScopeError struct{ scope string }

func (e *unknownScopeError) Error() string { return "sandbox: unknown scope " + e.scope }
