package pinterest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// pageSize is the largest page Pinterest serves.
const pageSize = 250

// maxPages bounds a listing, against a server that never ends it.
const maxPages = 10000

// AdAccount is an ad account the token's user can reach.
type AdAccount struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Country  string `json:"country"`
	Currency string `json:"currency"`
	// Owner is the account's owning user.
	Owner struct {
		ID       string `json:"id"`
		Username string `json:"username"`
	} `json:"owner"`
	// Permissions are the user's Business Access roles on the account
	// (OWNER, ADMIN, ANALYST, AUDIENCE_MANAGER, ...).
	Permissions []string `json:"permissions"`
}

// audienceRoles are the roles that may create and edit audiences and
// customer lists.
var audienceRoles = [...]string{"OWNER", "ADMIN", "AUDIENCE_MANAGER"}

// CanManageAudiences reports whether the permissions include a role that
// may create and update customer lists and audiences: OWNER, ADMIN or
// AUDIENCE_MANAGER.
func (a AdAccount) CanManageAudiences() bool {
	for _, p := range a.Permissions {
		if slices.Contains(audienceRoles[:], p) {
			return true
		}
	}
	return false
}

// page is Pinterest's Paginated envelope.
type page[T any] struct {
	Items    []T     `json:"items"`
	Bookmark *string `json:"bookmark"`
}

// paginate fetches every page of a bookmark-paginated listing.
func paginate[T any](ctx context.Context, c *Client, path string, query url.Values) ([]T, error) {
	var all []T
	seen := make(map[string]bool)
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	q.Set("page_size", strconv.Itoa(pageSize))
	for range maxPages {
		var p page[T]
		if err := c.do(ctx, request{method: http.MethodGet, path: path, query: q}, &p); err != nil {
			return nil, err
		}
		all = append(all, p.Items...)
		if p.Bookmark == nil || *p.Bookmark == "" {
			return all, nil
		}
		if seen[*p.Bookmark] {
			return nil, fmt.Errorf("pinterest: GET %s: bookmark repeated; the listing does not end", path)
		}
		seen[*p.Bookmark] = true
		q.Set("bookmark", *p.Bookmark)
	}
	return nil, fmt.Errorf("pinterest: GET %s: more than %d pages", path, maxPages)
}

func adAccountPath(id string) string { return "/ad_accounts/" + url.PathEscape(id) }

// AdAccounts lists the ad accounts the token's user owns or reaches through
// Business Access.
func (c *Client) AdAccounts(ctx context.Context) ([]AdAccount, error) {
	return paginate[AdAccount](ctx, c, "/ad_accounts", nil)
}

// AdAccount fetches one ad account.
func (c *Client) AdAccount(ctx context.Context, adAccountID string) (AdAccount, error) {
	if adAccountID == "" {
		return AdAccount{}, errors.New("pinterest: empty ad account id")
	}
	var a AdAccount
	err := c.do(ctx, request{method: http.MethodGet, path: adAccountPath(adAccountID)}, &a)
	return a, err
}

// CheckWriteAccess fails unless the token's user may manage customer lists
// and audiences on the ad account. A missing role is a *PermissionError
// naming the account and the roles the user has.
func (c *Client) CheckWriteAccess(ctx context.Context, adAccountID string) error {
	a, err := c.AdAccount(ctx, adAccountID)
	if err != nil {
		return fmt.Errorf("pinterest: check access to ad account %s: %w", adAccountID, err)
	}
	if !a.CanManageAudiences() {
		return &PermissionError{AdAccountID: adAccountID, Permissions: a.Permissions}
	}
	return nil
}
