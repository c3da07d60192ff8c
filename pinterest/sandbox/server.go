// Package sandbox is an in-memory fake of the parts of the Pinterest v5 Ads
// API that pinsync uses: ad accounts, customer lists, customer-list
// audiences and OAuth (authorize, token exchange and rotating refresh). It
// answers with the status codes, error bodies ({"code","message"}),
// x-pinterest-rid and x-ratelimit-* headers of the real API, enforces
// scopes, roles, ads_read/ads_write budgets and request size limits, and
// keeps every customer list's member set so that tests can check what a
// client really uploaded. Faults (5xx, latency, outages, 429 bursts, records
// refused) can be injected, and an admin API under /sandbox/v1 exposes state
// and does what only a user can do in Ads Manager or Business Access (delete
// a customer list, change the roles on an ad account).
//
// It is stricter than Pinterest where pinsync promises more: every record
// must be a lowercase hex SHA-256 (a plaintext identifier is rejected and
// counted). Records match only the users of a population given to it, hashed
// by its own reading of Pinterest's rules, so that a client that normalises
// an identifier otherwise sees its list match nobody. It does not model
// matching delays, list sizes that take hours
// to update, bulk uploads, other audience types, or more than one user.
//
// A Server is an http.Handler; serve it with httptest.NewServer in tests or
// with `pinsync sandbox` stand-alone. It is safe for concurrent use.
package sandbox

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Pinterest error codes the sandbox uses (from the spec's examples).
const (
	CodeInvalid       = 1  // invalid request or parameters
	CodeAuthFailed    = 2  // 401 Authentication failed. (also 404 AdAccount not found.)
	CodeNotFound      = 2  // 404 AdAccount not found.
	CodeScope         = 3  // 401 token lacks a scope
	CodeRateLimited   = 8  // 429
	CodeNotPermitted  = 29 // 403 role does not allow the operation
	MessageAuthFailed = "Authentication failed."
	MessageRateLimit  = "This request exceeded a rate limit. This can happen if the client exceeds one of the published rate limits within a short time window."
	MessageScope      = "Your token does not have sufficient permissions to perform this operation. Please ensure your token is authorized with the correct set of scopes."
	MessageForbidden  = "You are not permitted to access that resource."
)

// Rate-limit categories, as in the spec's x-ratelimit-category.
const (
	CategoryAdsRead  = "ads_read"
	CategoryAdsWrite = "ads_write"
	CategoryOAuth    = "oauth"
	CategoryAdmin    = "sandbox"
)

// sandboxUser is the one Pinterest user every token belongs to.
const sandboxUser = "sandbox-user"

// Server is the fake Pinterest API. Create it with New.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
	pop population

	mu       sync.Mutex
	accounts []AdAccount // config order
	acctByID map[string]*AdAccount
	// roles are the roles SetPermissions gave, by ad account id.
	roles  map[string][]string
	nextID uint64
	lists  map[string]*customerList
	auds   map[string]*audience
	// oauth state
	access  map[string]*accessToken
	refresh map[string]*refreshToken
	codes   map[string]*authCode
	// rate limiting: key user/category
	windows map[string]*window
	// faults
	faults    Faults
	outageEnd time.Time
	rng       *mrand.Rand
	// counters
	rid          uint64
	injected     int
	plainRejects int
	// statsMu guards stats and reqLog. Responses are counted while a
	// handler may hold mu, so the order is always mu, then statsMu.
	statsMu sync.Mutex
	stats   RequestStats
	reqLog  []RequestRecord
}

// New validates cfg, applies defaults and returns a ready Server.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pop, err := newPopulation(cfg.Population)
	if err != nil {
		return nil, err
	}
	cfg.Population = nil // kept as hashes only
	s := &Server{
		cfg:      cfg,
		pop:      pop,
		log:      cfg.Logger.With("component", "pinterest-sandbox"),
		accounts: cfg.AdAccounts,
		acctByID: map[string]*AdAccount{}, roles: map[string][]string{},
		nextID:  2542620639000,
		lists:   map[string]*customerList{},
		auds:    map[string]*audience{},
		access:  map[string]*accessToken{},
		refresh: map[string]*refreshToken{},
		codes:   map[string]*authCode{},
		windows: map[string]*window{},
		rng:     mrand.New(mrand.NewPCG(cfg.Seed, 0x9e3779b97f4a7c15)),
	}
	for i := range s.accounts {
		s.acctByID[s.accounts[i].ID] = &s.accounts[i]
	}
	now := cfg.Now()
	s.refresh[cfg.RefreshToken] = &refreshToken{user: sandboxUser, scopes: cfg.Scopes,
		expires: now.Add(cfg.RefreshTokenTTL)}
	if cfg.AccessToken != "" {
		s.access[cfg.AccessToken] = &accessToken{user: sandboxUser, scopes: cfg.Scopes,
			expires: now.Add(cfg.AccessTokenTTL)}
	}
	s.setFaultsLocked(cfg.Faults, now)
	s.stats.reset()
	s.routes()
	return s, nil
}

// operation describes one API operation for the shared middleware.
type operation struct {
	id       string // the spec's operationId
	category string // CategoryAdsRead / CategoryAdsWrite
	scope    string
	write    bool // needs a write role on the ad account
}

// apiHandler handles an authenticated API call.
type apiHandler func(w http.ResponseWriter, r *http.Request, c *call)

// call is what the middleware hands an API handler.
type call struct {
	op      operation
	user    string
	account *AdAccount // nil for ad_accounts/list
	records *int       // set by handlers that take records, for the log
}

func (s *Server) routes() {
	m := http.NewServeMux()
	read := func(id string) operation {
		return operation{id: id, category: CategoryAdsRead, scope: ScopeAdsRead}
	}
	write := func(id string) operation {
		return operation{id: id, category: CategoryAdsWrite, scope: ScopeAdsWrite, write: true}
	}
	const acct = "/v5/ad_accounts/{ad_account_id}"
	m.Handle("GET /v5/ad_accounts", s.api(read("ad_accounts/list"), false, s.listAdAccounts))
	m.Handle("GET "+acct, s.api(read("ad_accounts/get"), true, s.getAdAccount))
	m.Handle("POST "+acct+"/customer_lists", s.api(write("customer_lists/create"), true, s.createList))
	m.Handle("GET "+acct+"/customer_lists", s.api(read("customer_lists/list"), true, s.listLists))
	m.Handle("GET "+acct+"/customer_lists/{customer_list_id}", s.api(read("customer_lists/get"), true, s.getList))
	m.Handle("PATCH "+acct+"/customer_lists/{customer_list_id}", s.api(write("customer_lists/update"), true, s.updateList))
	m.Handle("POST "+acct+"/audiences", s.api(write("audiences/create"), true, s.createAudience))
	m.Handle("GET "+acct+"/audiences", s.api(read("audiences/list"), true, s.listAudiences))
	m.Handle("GET "+acct+"/audiences/{audience_id}", s.api(read("audiences/get"), true, s.getAudience))
	m.Handle("PATCH "+acct+"/audiences/{audience_id}", s.api(write("audiences/update"), true, s.updateAudience))
	m.Handle("POST /v5/oauth/token", s.plain("oauth/token", CategoryOAuth, s.token))
	m.Handle("GET /oauth/{$}", s.plain("oauth/authorize", CategoryOAuth, s.authorize))
	m.Handle("GET /sandbox/v1/state", s.plain("sandbox/state", CategoryAdmin, s.handleState))
	m.Handle("POST /sandbox/v1/reset", s.plain("sandbox/reset", CategoryAdmin, s.handleReset))
	m.Handle("DELETE /sandbox/v1/customer_lists/{customer_list_id}", s.plain("sandbox/delete_list", CategoryAdmin, s.handleDeleteList))
	m.Handle("POST /sandbox/v1/ad_accounts/{ad_account_id}/permissions", s.plain("sandbox/permissions", CategoryAdmin, s.handleSetPermissions))
	m.Handle("POST /sandbox/v1/ad_accounts/{ad_account_id}/received_audiences", s.plain("sandbox/share_audience", CategoryAdmin, s.handleShareAudience))
	m.Handle("GET /sandbox/v1/faults", s.plain("sandbox/faults", CategoryAdmin, s.handleGetFaults))
	m.Handle("POST /sandbox/v1/faults", s.plain("sandbox/faults", CategoryAdmin, s.handleSetFaults))
	m.Handle("POST /sandbox/v1/revoke", s.plain("sandbox/revoke", CategoryAdmin, s.handleRevoke))
	m.Handle("POST /sandbox/v1/tokens", s.plain("sandbox/tokens", CategoryAdmin, s.handleTokens))
	m.Handle("GET /sandbox/v1/requests", s.plain("sandbox/requests", CategoryAdmin, s.handleRequests))
	m.Handle("/", s.plain("unknown", "unknown", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, http.StatusNotFound, "Not found: no such endpoint.")
	}))
	s.mux = m
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mux.ServeHTTP(w, r)
}

// recorder captures the status and counts the request the moment the
// status is written, before the client can see the response, so that a
// client reading State right after a call always finds the call counted.
type recorder struct {
	http.ResponseWriter
	status   int
	onStatus func(status int)
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
		r.onStatus(code)
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.WriteHeader(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// plain wraps every handler: request id, counting, logging.
func (s *Server) plain(opID, category string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, opID, category, func(w http.ResponseWriter, r *http.Request, _ *int) { h(w, r) })
	})
}

// serve runs h with a request id, counts the request in State and the
// request log, and logs it. h may store the number of records the call
// carried in *records before it writes the response.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, opID, category string,
	h func(w http.ResponseWriter, r *http.Request, records *int)) {
	s.mu.Lock()
	s.rid++
	rid := fmt.Sprintf("sbx%013x", s.rid)
	s.mu.Unlock()
	w.Header().Set("x-pinterest-rid", rid)
	var records int
	rec := &recorder{ResponseWriter: w, onStatus: func(status int) {
		s.statsMu.Lock()
		defer s.statsMu.Unlock()
		s.stats.add(opID, category, status)
		if !strings.HasPrefix(r.URL.Path, "/sandbox/") {
			s.appendLogLocked(RequestRecord{Time: s.cfg.Now(), Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
				Operation: opID, Category: category, Status: status, Records: records, RequestID: rid,
				UserAgent: r.UserAgent()})
		}
	}}
	start := time.Now()
	h(rec, r, &records)
	if rec.status == 0 {
		rec.WriteHeader(http.StatusOK)
	}
	s.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
		slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("operation", opID), slog.Int("status", rec.status),
		slog.String("rid", rid), slog.Duration("took", time.Since(start)))
}

// api wraps an API operation: faults, authentication, scope, rate limit,
// ad account lookup and role check, in that order.
func (s *Server) api(op operation, needAccount bool, h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.serve(w, r, op.id, op.category, func(w http.ResponseWriter, r *http.Request, records *int) {
			c := &call{op: op, records: records}
			s.serveAPI(w, r, c, needAccount, h)
		})
	})
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request, c *call, needAccount bool, h apiHandler) {
	if !s.delay(r.Context()) {
		writeError(w, http.StatusServiceUnavailable, http.StatusServiceUnavailable, "Request cancelled.")
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	f := s.injectedFaultLocked(now, true)
	// An error injected after the call took effect needs a call that
	// passes authentication and the rate limit first.
	proceed := f.kind == faultNone || (f.kind == faultError && f.afterApply)
	var rl rateInfo
	if proceed {
		user, st, code, msg := s.authenticateLocked(r, c.op.scope, now)
		if st != 0 {
			s.mu.Unlock()
			writeError(w, st, code, msg)
			return
		}
		c.user = user
		rl = s.takeLocked(user, c.op.category, now)
	} else {
		rl = s.peekLocked(sandboxUser, c.op.category, now)
	}
	s.mu.Unlock()

	switch f.kind {
	case faultOutage:
		writeError(w, http.StatusServiceUnavailable, http.StatusServiceUnavailable, "Service unavailable (sandbox outage).")
		return
	case faultThrottle:
		if !f.noHeaders {
			rl.set(w.Header())
		}
		writeError(w, http.StatusTooManyRequests, CodeRateLimited, MessageRateLimit)
		return
	case faultError:
		if !f.afterApply {
			writeError(w, f.status, f.status, "Internal error (injected by sandbox).")
			return
		}
	}
	rl.set(w.Header())
	if rl.exceeded {
		writeError(w, http.StatusTooManyRequests, CodeRateLimited, MessageRateLimit)
		return
	}
	if f.kind == faultError {
		// Let the call take effect, then lose its response.
		s.runHandler(discardWriter(), r, c, needAccount, h)
		writeError(w, f.status, f.status, "Internal error (injected by sandbox).")
		return
	}
	s.runHandler(w, r, c, needAccount, h)
}

func (s *Server) runHandler(w http.ResponseWriter, r *http.Request, c *call, needAccount bool, h apiHandler) {
	if needAccount {
		c.account = s.accountByID(r.PathValue("ad_account_id"))
		if c.account == nil {
			if !isNumericID(r.PathValue("ad_account_id"), 18) {
				writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid ad_account_id: want a numeric string of at most 18 digits.")
				return
			}
			writeError(w, http.StatusNotFound, CodeNotFound, "AdAccount not found.")
			return
		}
		if c.op.write && !canWrite(s.permissions(c.account)) {
			writeError(w, http.StatusForbidden, CodeNotPermitted, MessageForbidden)
			return
		}
	}
	h(w, r, c)
}

func (s *Server) accountByID(id string) *AdAccount {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acctByID[id]
}

func canWrite(roles []string) bool {
	for _, p := range roles {
		if writeRoles[p] {
			return true
		}
	}
	return false
}

// delay waits out the injected latency; false if ctx ended first.
func (s *Server) delay(ctx context.Context) bool {
	s.mu.Lock()
	d := s.faults.Latency
	s.mu.Unlock()
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// apiError is the body of every non-OAuth error.
type apiError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// errBody is an error response for respond.
func errBody(status, code int, msg string) (int, any) {
	return status, apiError{Code: code, Message: msg}
}

// respond runs fn holding the state lock and writes what it returns after
// releasing it, so that no response is written under the lock.
func (s *Server) respond(w http.ResponseWriter, fn func() (int, any)) {
	s.mu.Lock()
	status, v := fn()
	s.mu.Unlock()
	writeJSON(w, status, v)
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, apiError{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		http.Error(w, `{"code":500,"message":"encoding failed"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// decodeStrict decodes exactly one JSON value with no unknown fields.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON value")
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data after JSON value")
	}
	return nil
}

// errTooLarge marks a body beyond Config.MaxBytes.
var errTooLarge = errors.New("request body too large")

// readJSON reads a JSON request body (at most limit bytes) into v, writing
// the error response itself. It returns false when it did.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	if ct := r.Header.Get("Content-Type"); !isJSONContentType(ct) {
		writeError(w, http.StatusUnsupportedMediaType, CodeInvalid, "Content-Type must be application/json.")
		return false
	}
	b, err := readBody(r, limit)
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("Request body exceeds %d bytes.", limit))
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Could not read request body.")
		return false
	}
	if err := decodeStrict(b, v); err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid request body: "+jsonErrorMessage(err))
		return false
	}
	return true
}

func readBody(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errTooLarge
	}
	return b, nil
}

// jsonErrorMessage describes a decoding error without echoing values.
func jsonErrorMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q has the wrong type (want %s).", te.Field, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("malformed JSON at offset %d.", se.Offset)
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "json: unknown field ") {
		return "unknown field " + strings.TrimPrefix(msg, "json: unknown field ") + "."
	}
	return "malformed JSON."
}

func isJSONContentType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

func discardWriter() http.ResponseWriter { return &nullWriter{h: http.Header{}} }

type nullWriter struct{ h http.Header }

func (n *nullWriter) Header() http.Header         { return n.h }
func (n *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (n *nullWriter) WriteHeader(int)             {}

func randomToken(prefix string) string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}
