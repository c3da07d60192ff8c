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

func accountJSON(a *AdAccount) adAccountJSON {
	owner := adAccountOwner{ID: "1000000000001", Username: "sandbox_user"}
	if a.Shared {
		owner = adAccountOwner{ID: "1000000000002", Username: "sandbox_partner"}
	}
	return adAccountJSON{Country: a.Country, CreatedTime: sandboxEpoch.Unix(), Currency: a.Currency,
		ID: a.ID, Name: a.Name, Owner: owner, Permissions: a.Permissions, UpdatedTime: sandboxEpoch.Unix()}
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
		items = append(items, pageItem{seq: uint64(i + 1), v: accountJSON(a)})
	}
	writeJSON(w, http.StatusOK, pg.apply(items))
}

func (s *Server) getAdAccount(w http.ResponseWriter, _ *http.Request, c *call) {
	writeJSON(w, http.StatusOK, accountJSON(c.account))
}
