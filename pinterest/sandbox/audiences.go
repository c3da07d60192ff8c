package sandbox

import (
	"net/http"
	"time"
)

// audience is one CUSTOMER_LIST audience.
type audience struct {
	id, account, name, description, listID string
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
		return http.StatusOK, s.audienceJSONLocked(a)
	})
}

// audienceLocked returns the audience if it exists in the call's ad
// account.
func (s *Server) audienceLocked(c *call, id string) *audience {
	if a := s.auds[id]; a != nil && a.account == c.account.ID {
		return a
	}
	return nil
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
	if !s.checkAudienceRequest(w, c, &req) {
		return
	}
	s.respond(w, func() (int, any) {
		a := s.audienceLocked(c, r.PathValue("audience_id"))
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
	owned := true
	switch r.URL.Query().Get("ownership_type") {
	case "", "OWNED":
	case "RECEIVED":
		owned = false
	default:
		writeError(w, http.StatusBadRequest, CodeInvalid, "Invalid ad account audience parameters.")
		return
	}
	var items []pageItem
	s.mu.Lock()
	if owned {
		for _, a := range s.auds {
			if a.account == c.account.ID {
				items = append(items, pageItem{seq: a.seq, v: s.audienceJSONLocked(a)})
			}
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, pg.apply(items))
}
