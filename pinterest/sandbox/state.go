package sandbox

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// State is a snapshot of the sandbox, as GET /sandbox/v1/state returns it.
type State struct {
	CustomerLists []ListState     `json:"customer_lists"`
	Audiences     []AudienceState `json:"audiences"`
	Requests      RequestStats    `json:"requests"`
	// PlaintextRejected counts records refused because they were not
	// hashed (each request counts once).
	PlaintextRejected int `json:"plaintext_rejected"`
	// RateLimited counts calls refused because the budget of a category
	// (ads_read, ads_write) was spent; injected 429s are not counted here.
	RateLimited map[string]int `json:"rate_limited"`
	// Population counts the Pinterest users records can match, by list
	// type (see Config.Population); "any" when every record matches.
	Population map[string]int `json:"population"`
}

// ListState is one customer list in State.
type ListState struct {
	ID          string   `json:"id"`
	AdAccountID string   `json:"ad_account_id"`
	Name        string   `json:"name"`
	ListType    string   `json:"list_type"`
	Records     []string `json:"records"` // sorted lowercase hex SHA-256
	// Matched is how many records match a Pinterest user of the population.
	Matched                int `json:"matched"`
	NumBatches             int `json:"num_batches"`
	NumUploadedUserRecords int `json:"num_uploaded_user_records"`
	NumRemovedUserRecords  int `json:"num_removed_user_records"`
	// Calls holds the number of records of each accepted create/update
	// call, in order.
	Calls []int `json:"calls"`
}

// AudienceState is one audience in State.
type AudienceState struct {
	ID             string `json:"id"`
	AdAccountID    string `json:"ad_account_id"`
	Name           string `json:"name"`
	CustomerListID string `json:"customer_list_id"`
	Size           int    `json:"size"`
	Status         string `json:"status"`
}

// RequestStats counts requests to /v5 and /oauth (not /sandbox).
type RequestStats struct {
	Total    int            `json:"total"`
	ByStatus map[string]int `json:"by_status"`
	// ByOperation counts by the spec's operationId (e.g.
	// "customer_lists/update", "oauth/token").
	ByOperation map[string]int `json:"by_operation"`
	// ByCategory counts by rate-limit category (ads_read, ads_write, oauth).
	ByCategory map[string]int `json:"by_category"`
	// Injected counts requests answered by an injected fault.
	Injected int `json:"injected_faults"`
}

func (rs *RequestStats) reset() {
	*rs = RequestStats{ByStatus: map[string]int{}, ByOperation: map[string]int{}, ByCategory: map[string]int{}}
}

func (rs *RequestStats) add(op, category string, status int) {
	if category == CategoryAdmin {
		return
	}
	rs.Total++
	rs.ByStatus[strconv.Itoa(status)]++
	rs.ByOperation[op]++
	rs.ByCategory[category]++
}

func (rs RequestStats) clone() RequestStats {
	out := rs
	out.ByStatus = cloneMap(rs.ByStatus)
	out.ByOperation = cloneMap(rs.ByOperation)
	out.ByCategory = cloneMap(rs.ByCategory)
	return out
}

func cloneMap(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// RequestRecord is one logged request to /v5 or /oauth.
type RequestRecord struct {
	Time   time.Time `json:"time"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	// Query is the request's query string (paging and filters: the API
	// takes no secret there).
	Query     string `json:"query,omitempty"`
	Operation string `json:"operation"`
	Category  string `json:"category"`
	Status    int    `json:"status"`
	// Records is the number of records an accepted customer-list call carried.
	Records   int    `json:"records"`
	RequestID string `json:"request_id"`
	// UserAgent is the client's User-Agent header (pinsync names its
	// instance there), so that a test can tell processes apart.
	UserAgent string `json:"user_agent,omitempty"`
}

// maxLog bounds the request log; older entries are dropped.
const maxLog = 10000

func (s *Server) appendLogLocked(rr RequestRecord) {
	if len(s.reqLog) >= maxLog {
		n := copy(s.reqLog, s.reqLog[maxLog/4:])
		s.reqLog = s.reqLog[:n]
	}
	s.reqLog = append(s.reqLog, rr)
}

// Requests returns the last requests (at most 10000), oldest first.
func (s *Server) Requests() []RequestRecord {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	return slices.Clone(s.reqLog)
}

// State returns a snapshot of lists, audiences and counters.
func (s *Server) State() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.statsMu.Lock()
	st := State{CustomerLists: []ListState{}, Audiences: []AudienceState{}, Requests: s.stats.clone(),
		PlaintextRejected: s.plainRejects, RateLimited: map[string]int{}, Population: s.pop.sizes()}
	s.statsMu.Unlock()
	if s.cfg.MatchAnyRecord {
		st.Population = map[string]int{"any": -1}
	}
	st.Requests.Injected = s.injected
	for _, l := range s.lists {
		st.CustomerLists = append(st.CustomerLists, s.listStateLocked(l))
	}
	slices.SortFunc(st.CustomerLists, func(a, b ListState) int { return compareIDs(a.ID, b.ID) })
	for _, a := range s.auds {
		size := s.sizeLocked(a)
		st.Audiences = append(st.Audiences, AudienceState{ID: a.id, AdAccountID: a.account, Name: a.name,
			CustomerListID: a.listID, Size: size, Status: sizeStatus(size)})
	}
	slices.SortFunc(st.Audiences, func(a, b AudienceState) int { return compareIDs(a.ID, b.ID) })
	for k, w := range s.windows {
		if w.rejected > 0 {
			_, cat, _ := cutLast(k, "/")
			st.RateLimited[cat] += w.rejected
		}
	}
	return st
}

// CustomerList returns one list's state, or false if there is none.
func (s *Server) CustomerList(id string) (ListState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.lists[id]
	if l == nil {
		return ListState{}, false
	}
	return s.listStateLocked(l), true
}

func (s *Server) listStateLocked(l *customerList) ListState {
	ds := make([]digest, 0, len(l.members))
	for d := range l.members {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(a, b digest) int { return bytes.Compare(a[:], b[:]) })
	recs := make([]string, len(ds))
	for i := range ds {
		recs[i] = hex.EncodeToString(ds[i][:])
	}
	return ListState{ID: l.id, AdAccountID: l.account, Name: l.name, ListType: l.listType, Records: recs,
		Matched: l.matched, NumBatches: l.batches, NumUploadedUserRecords: l.uploaded,
		NumRemovedUserRecords: l.removed, Calls: slices.Clone(l.calls)}
}

func compareIDs(a, b string) int {
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cutLast(s, sep string) (string, string, bool) {
	for i := len(s) - len(sep); i >= 0; i-- {
		if s[i:i+len(sep)] == sep {
			return s[:i], s[i+len(sep):], true
		}
	}
	return s, "", false
}

// Reset forgets every customer list, audience, counter, log entry, rate
// window and fault (faults return to Config.Faults). OAuth state (issued
// tokens, revocations) and the id sequence are kept, so a running client
// keeps working and ids are never reused.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.lists)
	clear(s.auds)
	clear(s.roles)
	clear(s.windows)
	s.injected = 0
	s.plainRejects = 0
	s.statsMu.Lock()
	s.stats.reset()
	s.reqLog = nil
	s.statsMu.Unlock()
	s.setFaultsLocked(s.cfg.Faults, s.cfg.Now())
}

func (s *Server) handleState(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.State())
}

// DeleteCustomerList deletes a customer list as a user does in Ads Manager
// (the API has no such call): every later call on it answers 404, and the
// audiences that follow it keep pointing at it. It reports whether the
// list existed.
func (s *Server) DeleteCustomerList(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.lists[id]; !ok {
		return false
	}
	delete(s.lists, id)
	return true
}

func (s *Server) handleDeleteList(w http.ResponseWriter, r *http.Request) {
	if !s.DeleteCustomerList(r.PathValue("customer_list_id")) {
		writeError(w, http.StatusNotFound, http.StatusNotFound, "Customer list not found.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) handleGetFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) handleSetFaults(w http.ResponseWriter, r *http.Request) {
	var f Faults
	if !readJSON(w, r, 64<<10, &f) {
		return
	}
	if err := s.SetFaults(f); err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	rv := Revocation{AccessTokens: true, RefreshTokens: true}
	if r.ContentLength != 0 {
		rv = Revocation{}
		if !readJSON(w, r, 64<<10, &rv) {
			return
		}
	}
	s.Revoke(rv)
	w.WriteHeader(http.StatusNoContent)
}

type tokensRequest struct {
	Scopes []string `json:"scopes"`
}

func (s *Server) handleTokens(w http.ResponseWriter, r *http.Request) {
	var req tokensRequest
	if r.ContentLength != 0 && !readJSON(w, r, 64<<10, &req) {
		return
	}
	t, err := s.GrantTokens(req.Scopes...)
	if err != nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) handleRequests(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"requests": s.Requests()})
}
