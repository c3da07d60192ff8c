package sandbox

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// digest is one record: the 32 bytes of a SHA-256.
type digest [32]byte

// customerList is one customer list and its members.
type customerList struct {
	id, account, name, listType string
	seq                         uint64
	created, updated            time.Time
	members                     map[digest]struct{}
	matched                     int
	batches, uploaded, removed  int
	calls                       []int // records per create/update call
}

// customerListJSON is the spec's CustomerList.
type customerListJSON struct {
	AdAccountID            string         `json:"ad_account_id"`
	CreatedTime            int64          `json:"created_time"`
	Exceptions             map[string]any `json:"exceptions"`
	ID                     string         `json:"id"`
	Name                   string         `json:"name"`
	NumBatches             int            `json:"num_batches"`
	NumRemovedUserRecords  int            `json:"num_removed_user_records"`
	NumUploadedUserRecords int            `json:"num_uploaded_user_records"`
	Status                 string         `json:"status"`
	Type                   string         `json:"type"`
	UpdatedTime            int64          `json:"updated_time"`
}

func (l *customerList) json() customerListJSON {
	return customerListJSON{
		AdAccountID: l.account, CreatedTime: l.created.Unix(), Exceptions: map[string]any{},
		ID: l.id, Name: l.name, NumBatches: l.batches, NumRemovedUserRecords: l.removed,
		NumUploadedUserRecords: l.uploaded, Status: sizeStatus(l.matched), Type: "customerlist",
		UpdatedTime: l.updated.Unix(),
	}
}

func sizeStatus(matched int) string {
	if matched < MinAudienceSize {
		return "TOO_SMALL"
	}
	return "READY"
}

var listTypes = map[string]bool{"EMAIL": true, "IDFA": true, "MAID": true, "LR_ID": true, "DLX_ID": true, "HASHED_PINNER_ID": true}

// recordsError is a rejected records string.
type recordsError struct {
	status    int
	msg       string
	plaintext bool
}

var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = byte(c - '0')
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] = byte(c-'a') + 10
	}
	return t
}()

// parseRecords splits a comma-separated records string into digests. A
// single trailing comma is tolerated (the spec's example has one); empty
// elements elsewhere, spaces, and anything but 64 lowercase hex digits are
// rejected. Duplicates are kept (counters count them; membership is a set).
func parseRecords(s string, maxRecords int) ([]digest, *recordsError) {
	if len(s) > 0 && s[len(s)-1] == ',' {
		s = s[:len(s)-1]
	}
	if s == "" {
		return nil, &recordsError{status: http.StatusBadRequest, msg: "records must not be empty."}
	}
	n := strings.Count(s, ",") + 1
	if n > maxRecords {
		return nil, &recordsError{status: http.StatusRequestEntityTooLarge,
			msg: fmt.Sprintf("Too many records: %d, at most %d per request.", n, maxRecords)}
	}
	out := make([]digest, 0, n)
	for i := 0; ; i++ {
		j := strings.IndexByte(s, ',')
		rec := s
		if j >= 0 {
			rec = s[:j]
		}
		d, err := decodeRecord(rec, i)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
		if j < 0 {
			return out, nil
		}
		s = s[j+1:]
	}
}

func decodeRecord(rec string, i int) (digest, *recordsError) {
	var d digest
	if len(rec) == 64 {
		ok := true
		for k := 0; k < 32; k++ {
			hi, lo := hexVal[rec[2*k]], hexVal[rec[2*k+1]]
			if hi|lo == 0xff {
				ok = false
				break
			}
			d[k] = hi<<4 | lo
		}
		if ok {
			return d, nil
		}
	}
	return d, classifyBad(rec, i)
}

// classifyBad explains why a record is not a SHA-256; it never quotes it.
func classifyBad(rec string, i int) *recordsError {
	bad := func(msg string, plain bool) *recordsError {
		return &recordsError{status: http.StatusBadRequest, msg: fmt.Sprintf("records[%d] %s", i, msg), plaintext: plain}
	}
	if rec == "" {
		return bad("is empty.", false)
	}
	hexOnly, lower := true, true
	for k := 0; k < len(rec); k++ {
		c := rec[k]
		switch {
		case hexVal[c] != 0xff:
		case c >= 'A' && c <= 'F':
			lower = false
		default:
			hexOnly = false
		}
	}
	switch {
	case hexOnly && len(rec) == 64 && !lower:
		return bad("is a SHA-256 in uppercase hex; send lowercase hex.", false)
	case hexOnly && (len(rec) == 32 || len(rec) == 40):
		return bad("is an MD5 or SHA-1 digest; this sandbox (like pinsync) accepts only SHA-256.", false)
	}
	if t := strings.TrimSpace(rec); t != rec {
		_, inner := parseRecords(t, 1)
		return bad("has whitespace around it; join records with \",\" only.", inner != nil && inner.plaintext)
	}
	return bad("is not a hashed identifier (plaintext identifiers are rejected); send the lowercase hex SHA-256.", true)
}

// matches reports whether record d of a list of type listType matches a
// Pinterest user of the population.
func (s *Server) matches(listType string, d digest) bool {
	return s.cfg.MatchAnyRecord || s.pop.matches(listType, d)
}

func (s *Server) newIDLocked() (string, uint64) {
	s.nextID++
	return strconv.FormatUint(s.nextID, 10), s.nextID
}

type createListRequest struct {
	Name     *string `json:"name"`
	Records  *string `json:"records"`
	ListType *string `json:"list_type"`
}

type updateListRequest struct {
	OperationType *string `json:"operation_type"`
	Records       *string `json:"records"`
}

// takeRecords parses and validates a records string, writing the error.
func (s *Server) takeRecords(w http.ResponseWriter, c *call, recs *string) ([]digest, bool) {
	if recs == nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Missing required field records.")
		return nil, false
	}
	ds, rerr := parseRecords(*recs, s.cfg.MaxRecords)
	if rerr != nil {
		if rerr.plaintext {
			s.mu.Lock()
			s.plainRejects++
			s.mu.Unlock()
		}
		code := CodeInvalid
		if rerr.status == http.StatusRequestEntityTooLarge {
			code = http.StatusRequestEntityTooLarge
		}
		writeError(w, rerr.status, code, rerr.msg)
		return nil, false
	}
	*c.records = len(ds)
	if s.refused(ds) {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid records.")
		return nil, false
	}
	return ds, true
}

// refusedName reports whether the faults say to refuse name.
func (s *Server) refusedName(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.faults.RefuseNames {
		if strings.Contains(name, n) {
			return true
		}
	}
	return false
}

// refused reports whether ds holds a record the faults say to refuse.
func (s *Server) refused(ds []digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.faults.RefuseRecords) == 0 {
		return false
	}
	for _, d := range ds {
		if slices.Contains(s.faults.RefuseRecords, hex.EncodeToString(d[:])) {
			return true
		}
	}
	return false
}

func (s *Server) createList(w http.ResponseWriter, r *http.Request, c *call) {
	var req createListRequest
	if !readJSON(w, r, s.cfg.MaxBytes, &req) {
		return
	}
	if req.Name == nil || *req.Name == "" {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Missing required field name.")
		return
	}
	if s.refusedName(*req.Name) {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid name.")
		return
	}
	lt := "EMAIL"
	if req.ListType != nil {
		lt = *req.ListType
		if !listTypes[lt] {
			writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid list_type: want one of EMAIL, IDFA, MAID, LR_ID, DLX_ID, HASHED_PINNER_ID.")
			return
		}
	}
	ds, ok := s.takeRecords(w, c, req.Records)
	if !ok {
		return
	}
	s.mu.Lock()
	now := s.cfg.Now()
	id, seq := s.newIDLocked()
	l := &customerList{id: id, seq: seq, account: c.account.ID, name: *req.Name, listType: lt,
		created: now, updated: now, members: make(map[digest]struct{}, len(ds))}
	s.applyLocked(l, true, ds)
	s.lists[id] = l
	out := l.json()
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

// applyLocked adds or removes records and moves the counters as Pinterest
// does: every call is a batch; every record counts, present or not.
func (s *Server) applyLocked(l *customerList, add bool, ds []digest) {
	l.batches++
	l.calls = append(l.calls, len(ds))
	if add {
		l.uploaded += len(ds)
		for _, d := range ds {
			if _, in := l.members[d]; !in {
				l.members[d] = struct{}{}
				if s.matches(l.listType, d) {
					l.matched++
				}
			}
		}
		return
	}
	l.removed += len(ds)
	for _, d := range ds {
		if _, in := l.members[d]; in {
			delete(l.members, d)
			if s.matches(l.listType, d) {
				l.matched--
			}
		}
	}
}

// listLocked returns the list if it exists in the call's ad account.
func (s *Server) listLocked(c *call, id string) *customerList {
	if l := s.lists[id]; l != nil && l.account == c.account.ID {
		return l
	}
	return nil
}

func listNotFound() (int, any) {
	return errBody(http.StatusNotFound, http.StatusNotFound, "Customer list not found.")
}

func (s *Server) updateList(w http.ResponseWriter, r *http.Request, c *call) {
	var req updateListRequest
	if !readJSON(w, r, s.cfg.MaxBytes, &req) {
		return
	}
	if req.OperationType == nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Missing required field operation_type.")
		return
	}
	var add bool
	switch *req.OperationType {
	case "ADD":
		add = true
	case "REMOVE":
	default:
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid operation_type: want ADD or REMOVE.")
		return
	}
	ds, ok := s.takeRecords(w, c, req.Records)
	if !ok {
		return
	}
	s.respond(w, func() (int, any) {
		l := s.listLocked(c, r.PathValue("customer_list_id"))
		if l == nil {
			return listNotFound()
		}
		s.applyLocked(l, add, ds)
		l.updated = s.cfg.Now()
		return http.StatusOK, l.json()
	})
}

func (s *Server) getList(w http.ResponseWriter, r *http.Request, c *call) {
	s.respond(w, func() (int, any) {
		l := s.listLocked(c, r.PathValue("customer_list_id"))
		if l == nil {
			return listNotFound()
		}
		return http.StatusOK, l.json()
	})
}

func (s *Server) listLists(w http.ResponseWriter, r *http.Request, c *call) {
	pg, ok := parsePage(w, r, true)
	if !ok {
		return
	}
	s.mu.Lock()
	var items []pageItem
	for _, l := range s.lists {
		if l.account == c.account.ID {
			items = append(items, pageItem{seq: l.seq, v: l.json()})
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, pg.apply(items))
}
