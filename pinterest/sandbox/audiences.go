package sandbox

import (
	"net/http"
	"time"
)

// audience is one CUSTOMER_LIST audience, owned by account. receivedBy,
// when set, is an ad account it is shared with (Pinterest shares audiences
// across the ad accounts of one business): that account sees it in its
// listing unless it asks for ownership_type=OWNED, and may read it but not
// change it.
type audience struct {
	id, account, name, description, listID string
	receivedBy                             string
	hasDescription                         bool
	seq                                    uint64
	created, updated                       time.Time
}

type audienceRuleJSON struct {
	CustomerListID *string `json:"customer_list_id,omitempty"`
	AdAccountID    *string `json:"ad_account_id,omitempty"`
}

// audienceJSON is the spec's Audience.
type audienceJSON struct {
	AdAccountID          string           `json:"ad_account_id"`
	AudienceType         string           `json:"audience_type"`
	CreatedByCompanyName *string          `json:"created_by_company_name"`
	CreatedTimestamp     int64            `json:"created_timestamp"`
	Description          *string          `json:"description"`
	ID                   string           `json:"id"`
	Name                 string           `json:"name"`
	Rule                 audienceRuleJSON `json:"rule"`
	Size                 int              `json:"size"`
	Status               string           `json:"status"`
	Type                 string           `json:"type"`
	UpdatedTimestamp     int64            `json:"updated_timestamp"`
}

// sizeLocked is the audience size: matched members of its list.
func (s *Server) sizeLocked(a *audience) int {
	if l := s.lists[a.listID]; l != nil {
		return l.matched
	}
	return 0
}

func (s *Server) audienceJSONLocked(a *audience) audienceJSON {
	size := s.sizeLocked(a)
	listID := a.listID
	out := audienceJSON{AdAccountID: a.account, AudienceType: "CUSTOMER_LIST", CreatedTimestamp: a.created.Unix(),
		ID: a.id, Name: a.name, Rule: audienceRuleJSON{CustomerListID: &listID}, Size: size,
		Status: sizeStatus(size), Type: "audience", UpdatedTimestamp: a.updated.Unix()}
	if a.hasDescription {
		d := a.description
		out.Description = &d
	}
	return out
}

type audienceRequest struct {
	AdAccountID   *string           `json:"ad_account_id"`
	Name          *string           `json:"name"`
	Rule          *audienceRuleJSON `json:"rule"`
	AudienceType  *string           `json:"audience_type"`
	Description   *string           `json:"description"`
	OperationType *string           `json:"operation_type"`
}

// checkAudienceRequest validates the fields common to create and update.
func (s *Server) checkAudienceRequest(w http.ResponseWriter, c *call, req *audienceRequest) bool {
	if req.AdAccountID != nil && *req.AdAccountID != c.account.ID {
		writeError(w, http.StatusBadRequest, CodeInvalid, "ad_account_id in the body does not match the path.")
		return false
	}
	if req.Rule != nil {
		if req.Rule.AdAccountID != nil && *req.Rule.AdAccountID != c.account.ID {
			writeError(w, http.StatusBadRequest, CodeInvalid, "rule.ad_account_id does not match the path.")
			return false
		}
		if req.Rule.CustomerListID == nil || !isNumericID(*req.Rule.CustomerListID, 18) {
			writeError(w, http.StatusBadRequest, CodeInvalid, "rule.customer_list_id is required for CUSTOMER_LIST audiences and must be a numeric string.")
			return false
		}
	}
	return true
}

func (s *Server) createAudience(w http.ResponseWriter, r *http.Request, c *call) {
	var req audienceRequest
	if !readJSON(w, r, 64<<10, &req) {
		return
	}
	switch {
	case req.OperationType != nil:
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid request body: unknown field \"operation_type\".")
		return
	case req.AudienceType == nil:
		writeError(w, http.StatusBadRequest, CodeInvalid, "Missing required field audience_type.")
		return
	case *req.AudienceType != "CUSTOMER_LIST":
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid audience_type: this sandbox supports CUSTOMER_LIST only.")
		return
	case req.Name == nil || *req.Name == "":
		writeError(w, http.StatusBadRequest, CodeInvalid, "Missing required field name.")
		return
	case req.Rule == nil:
		writeError(w, http.StatusBadRequest, CodeInvalid, "Missing required field rule.")
		return
	case s.refusedName(*req.Name):
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid name.")
		return
	}
	if !s.checkAudienceRequest(w, c, &req) {
		return
	}
	s.respond(w, func() (int, any) {
		if l := s.lists[*req.Rule.CustomerListID]; l == nil || l.account != c.account.ID {
			return errBody(http.StatusBadRequest, CodeInvalid, "Invalid rule.customer_list_id: customer list not found in this ad account.")
		}
		now := s.cfg.Now()
		id, seq := s.newIDLocked()
		a := &audience{id: id, seq: seq, account: c.account.ID, name: *req.Name, listID: *req.Rule.CustomerListID,
			created: now, updated: now}
		if req.Description != nil {
			a.description, a.hasDescription = *req.Description, true
		}
		s.auds[id] = a
		return http.StatusCreated, s.audienceJSONLocked(a)
	})
}

// audienceLocked returns the audience if the call's ad account owns it.
func (s *Server) audienceLocked(c *call, id string) *audience {
	if a := s.auds[id]; a != nil && a.account == c.account.ID {
		return a
	}
	return nil
}

// receivedLocked reports whether audience id is shared with the call's ad
// account by another.
func (s *Server) receivedLocked(c *call, id string) bool {
	a := s.auds[id]
	return a != nil && a.receivedBy == c.account.ID
}

func (s *Server) updateAudience(w http.ResponseWriter, r *http.Request, c *call) {
	var req audienceRequest
	if !readJSON(w, r, 64<<10, &req) {
		return
	}
	if req.AudienceType != nil {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid request body: unknown field \"audience_type\".")
		return
	}
	remove := false
	if req.OperationType != nil {
		switch *req.OperationType {
		case "UPDATE":
		case "REMOVE":
			remove = true
		default:
			writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid operation_type: want UPDATE or REMOVE.")
			return
		}
	}
	if req.Name != nil && *req.Name == "" {
		writeError(w, http.StatusBadRequest, CodeInvalid, "name must not be empty.")
		return
	}
	if req.Name != nil && s.refusedName(*req.Name) {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid name.")
		return
	}
	if !s.checkAudienceRequest(w, c, &req) {
		return
	}
	s.respond(w, func() (int, any) {
		a := s.audienceLocked(c, r.PathValue("audience_id"))
		if a == nil && s.receivedLocked(c, r.PathValue("audience_id")) {
			return errBody(http.StatusForbidden, CodeNotPermitted, MessageForbidden)
		}
		if a == nil {
			return errBody(http.StatusNotFound, http.StatusNotFound, "Audience not found.")
		}
		if req.Rule != nil {
			if l := s.lists[*req.Rule.CustomerListID]; l == nil || l.account != c.account.ID {
				return errBody(http.StatusBadRequest, CodeInvalid, "Invalid rule.customer_list_id: customer list not found in this ad account.")
			}
		}
		a.updated = s.cfg.Now()
		if remove {
			delete(s.auds, a.id)
			return http.StatusOK, s.audienceJSONLocked(a)
		}
		if req.Name != nil {
			a.name = *req.Name
		}
		if req.Description != nil {
			a.description, a.hasDescription = *req.Description, true
		}
		if req.Rule != nil {
			a.listID = *req.Rule.CustomerListID
		}
		return http.StatusOK, s.audienceJSONLocked(a)
	})
}

func (s *Server) getAudience(w http.ResponseWriter, r *http.Request, c *call) {
	s.respond(w, func() (int, any) {
		a := s.audienceLocked(c, r.PathValue("audience_id"))
		if a == nil && s.receivedLocked(c, r.PathValue("audience_id")) {
			a = s.auds[r.PathValue("audience_id")]
		}
		if a == nil {
			return errBody(http.StatusNotFound, http.StatusNotFound, "Audience not found.")
		}
		return http.StatusOK, s.audienceJSONLocked(a)
	})
}

func (s *Server) listAudiences(w http.ResponseWriter, r *http.Request, c *call) {
	pg, ok := parsePage(w, r, true)
	if !ok {
		return
	}
	// Since API 5.24 the listing has no default ownership: without
	// ownership_type it holds the audiences shared with the account too.
	owned, received := true, true
	switch r.URL.Query().Get("ownership_type") {
	case "":
	case "OWNED":
		received = false
	case "RECEIVED":
		owned = false
	default:
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid ad account audience parameters.")
		return
	}
	var items []pageItem
	s.mu.Lock()
	for _, a := range s.auds {
		if owned && a.account == c.account.ID || received && a.receivedBy == c.account.ID {
			items = append(items, pageItem{seq: a.seq, v: s.audienceJSONLocked(a)})
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, pg.apply(items))
}

// ShareAudience makes another business account, owner, share with ad
// account to a CUSTOMER_LIST audience named name (following an empty list
// of owner's named "list of <name>"), as a partner does through Business Access; it returns the
// audience's id, or false if to is not an ad account of the sandbox or
// owner is not a valid, different ad account id.
func (s *Server) ShareAudience(to, owner, name string) (string, bool) {
	if s.accountByID(to) == nil || !isNumericID(owner, 18) || owner == to || name == "" {
		return "", false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	listID, seq := s.newIDLocked()
	s.lists[listID] = &customerList{id: listID, seq: seq, account: owner, name: "list of " + name, listType: "EMAIL",
		created: now, updated: now, members: map[digest]struct{}{}}
	id, seq := s.newIDLocked()
	s.auds[id] = &audience{id: id, seq: seq, account: owner, receivedBy: to, name: name, listID: listID,
		created: now, updated: now}
	return id, true
}

// handleShareAudience is POST /sandbox/v1/ad_accounts/{id}/received_audiences
// with {"name": "...", "owner_ad_account_id": "..."}; it answers the
// audience as the listing shows it.
func (s *Server) handleShareAudience(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name  string `json:"name"`
		Owner string `json:"owner_ad_account_id"`
	}
	if !readJSON(w, r, 64<<10, &req) {
		return
	}
	id, ok := s.ShareAudience(r.PathValue("ad_account_id"), req.Owner, req.Name)
	if !ok {
		writeError(w, http.StatusBadRequest, CodeInvalid, "Unknown ad account, or owner_ad_account_id not another numeric id, or no name.")
		return
	}
	s.respond(w, func() (int, any) { return http.StatusCreated, s.audienceJSONLocked(s.auds[id]) })
}
