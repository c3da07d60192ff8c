package sandbox

import (
	"net/http"
	"time"
)

// sandboxEpoch is the fixed creation time reported for ad accounts.
var sandboxEpoch = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

type adAccountOwner struct {
	ID       string `json:"id"`
	Username string `json:"username"`
}

// adAccountJSON is the spec's AdAccount.
type adAccountJSON struct {
	Country     string         `json:"country"`
	CreatedTime int64          `json:"created_time"`
	Currency    string         `json:"currency"`
	ID          string         `json:"id"`
	Name        string         `json:"name"`
	Owner       adAccountOwner `json:"owner"`
	Permissions []string       `json:"permissions"`
	UpdatedTime int64          `json:"updated_time"`
}

func (s *Server) accountJSON(a *AdAccount) adAccountJSON {
	owner := adAccountOwner{ID: "1000000000001", Username: "sandbox_user"}
	if a.Shared {
		owner = adAccountOwner{ID: "1000000000002", Username: "sandbox_partner"}
	}
	return adAccountJSON{Country: a.Country, CreatedTime: sandboxEpoch.Unix(), Currency: a.Currency,
		ID: a.ID, Name: a.Name, Owner: owner, Permissions: s.permissions(a), UpdatedTime: sandboxEpoch.Unix()}
}

func (s *Server) listAdAccounts(w http.ResponseWriter, r *http.Request, _ *call) {
	shared := true
	switch r.URL.Query().Get("include_shared_accounts") {
	case "", "true":
	case "false":
		shared = false
	default:
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid include_shared_accounts: want true or false.")
		return
	}
	pg, ok := parsePage(w, r, false)
	if !ok {
		return
	}
	var items []pageItem
	for i := range s.accounts { // immutable after New
		a := &s.accounts[i]
		if a.Shared && !shared {
			continue
		}
		items = append(items, pageItem{seq: uint64(i + 1), v: s.accountJSON(a)})
	}
	writeJSON(w, http.StatusOK, pg.apply(items))
}

func (s *Server) getAdAccount(w http.ResponseWriter, _ *http.Request, c *call) {
	writeJSON(w, http.StatusOK, s.accountJSON(c.account))
}

// permissions returns the roles the token's user has on a: those of the
// configuration unless SetPermissions changed them.
func (s *Server) permissions(a *AdAccount) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.roles[a.ID]; ok {
		return p
	}
	return a.Permissions
}

// SetPermissions gives the token's user these roles on ad account id, as
// when its owner changes them in Business Access: without OWNER, ADMIN or
// AUDIENCE_MANAGER every write to the account answers 403. It reports
// false for an unknown account or role.
func (s *Server) SetPermissions(id string, roles []string) bool {
	if s.accountByID(id) == nil {
		return false
	}
	for _, r := range roles {
		if !businessRoles[r] {
			return false
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.roles[id] = append([]string{}, roles...)
	return true
}

// handleSetPermissions is POST /sandbox/v1/ad_accounts/{id}/permissions
// with {"permissions": ["VIEWER"]}.
func (s *Server) handleSetPermissions(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Permissions []string `json:"permissions"`
	}
	if !readJSON(w, r, 64<<10, &req) {
		return
	}
	if !s.SetPermissions(r.PathValue("ad_account_id"), req.Permissions) {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Unknown ad account or role.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
