package pinterest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
)

// Audience is a Pinterest audience. pinsync creates CUSTOMER_LIST audiences,
// each following one customer list.
type Audience struct {
	ID           string       `json:"id"`
	AdAccountID  string       `json:"ad_account_id"`
	Name         string       `json:"name"`
	AudienceType string       `json:"audience_type"`
	Description  string       `json:"description"`
	Rule         AudienceRule `json:"rule"`
	// Size is the matched size; nil until Pinterest reports one.
	Size *int64 `json:"size"`
	// Status is READY, INITIALIZING or TOO_SMALL (fewer than 100 matched
	// Pinterest users), or another value Pinterest adds.
	Status           string `json:"status"`
	CreatedTimestamp *int64 `json:"created_timestamp"`
	UpdatedTimestamp *int64 `json:"updated_timestamp"`
}

// AudienceRule is the part of an audience rule pinsync uses.
type AudienceRule struct {
	// CustomerListID is the customer list a CUSTOMER_LIST audience follows.
	CustomerListID string `json:"customer_list_id,omitempty"`
}

func audiencesPath(adAccountID string) string { return adAccountPath(adAccountID) + "/audiences" }

// CreateAudience creates a CUSTOMER_LIST audience named name that follows
// the customer list. Like CreateCustomerList, a create whose outcome is
// unknown is not repeated blindly: before a retry the client looks for an
// audience of that name on that list.
func (c *Client) CreateAudience(ctx context.Context, adAccountID, name, customerListID string) (Audience, error) {
	switch {
	case adAccountID == "":
		return Audience{}, errors.New("pinterest: empty ad account id")
	case name == "":
		return Audience{}, errors.New("pinterest: empty audience name")
	case customerListID == "":
		return Audience{}, errors.New("pinterest: empty customer list id")
	}
	req := struct {
		AdAccountID  string       `json:"ad_account_id"`
		Name         string       `json:"name"`
		AudienceType string       `json:"audience_type"`
		Rule         AudienceRule `json:"rule"`
	}{adAccountID, name, "CUSTOMER_LIST", AudienceRule{CustomerListID: customerListID}}
	b, err := c.jsonBody(req)
	if err != nil {
		return Audience{}, err
	}
	defer b.release()
	var a Audience
	err = c.do(ctx, request{
		method: http.MethodPost, path: audiencesPath(adAccountID), body: b, adAccount: adAccountID,
		recover: func(ctx context.Context) (bool, error) {
			all, err := c.Audiences(ctx, adAccountID)
			if err != nil {
				return false, err
			}
			for _, x := range all {
				if x.Name == name && x.Rule.CustomerListID == customerListID {
					a = x
					return true, nil
				}
			}
			return false, nil
		},
	}, &a)
	if err != nil {
		return Audience{}, err
	}
	c.log.InfoContext(ctx, "audience created", "ad_account", adAccountID, "audience", a.ID, "customer_list", customerListID)
	return a, nil
}

// Audience fetches one audience.
func (c *Client) Audience(ctx context.Context, adAccountID, audienceID string) (Audience, error) {
	if adAccountID == "" || audienceID == "" {
		return Audience{}, errors.New("pinterest: empty ad account or audience id")
	}
	var a Audience
	err := c.do(ctx, request{method: http.MethodGet, path: audiencesPath(adAccountID) + "/" + url.PathEscape(audienceID)}, &a)
	return a, err
}

// Audiences lists the audiences the ad account owns. It asks for
// ownership_type=OWNED: since API 5.24 the listing has no default and
// otherwise holds audiences other accounts share with this one, which
// pinsync must never take for its own. An audience of another account that
// comes anyway is left out.
func (c *Client) Audiences(ctx context.Context, adAccountID string) ([]Audience, error) {
	if adAccountID == "" {
		return nil, errors.New("pinterest: empty ad account id")
	}
	all, err := paginate[Audience](ctx, c, audiencesPath(adAccountID), url.Values{"ownership_type": {"OWNED"}})
	if err != nil {
		return nil, err
	}
	owned := all[:0]
	for _, a := range all {
		if a.AdAccountID == "" || a.AdAccountID == adAccountID {
			owned = append(owned, a)
		}
	}
	return owned, nil
}

// RepointAudience makes a CUSTOMER_LIST audience follow another customer
// list of its ad account (PATCH of its rule.customer_list_id): campaigns
// targeting the audience then target the new list. Repeating it is
// harmless.
func (c *Client) RepointAudience(ctx context.Context, adAccountID, audienceID, customerListID string) (Audience, error) {
	if adAccountID == "" || audienceID == "" || customerListID == "" {
		return Audience{}, errors.New("pinterest: empty ad account, audience or customer list id")
	}
	req := struct {
		AdAccountID   string       `json:"ad_account_id"`
		Rule          AudienceRule `json:"rule"`
		OperationType string       `json:"operation_type"`
	}{adAccountID, AudienceRule{CustomerListID: customerListID}, "UPDATE"}
	b, err := c.jsonBody(req)
	if err != nil {
		return Audience{}, err
	}
	defer b.release()
	var a Audience
	err = c.do(ctx, request{
		method: http.MethodPatch, path: audiencesPath(adAccountID) + "/" + url.PathEscape(audienceID),
		body: b, adAccount: adAccountID,
	}, &a)
	if err != nil {
		return Audience{}, err
	}
	c.log.InfoContext(ctx, "audience repointed", "ad_account", adAccountID, "audience", audienceID, "customer_list", customerListID)
	return a, nil
}
