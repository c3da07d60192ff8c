package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/pinsync/pinsync/pinterest"
)

// accountJSON is one line of `pinsync accounts --json`.
type accountJSON struct {
	ID                 string   `json:"id"`
	Name               string   `json:"name"`
	Country            string   `json:"country"`
	Currency           string   `json:"currency"`
	Permissions        []string `json:"permissions"`
	CanManageAudiences bool     `json:"can_manage_audiences"`
	Configured         bool     `json:"configured"`
}

// runAccounts is `pinsync accounts`: the ad accounts the stored token
// reaches, whether each lets pinsync manage audiences, and which one is
// configured (pinterest.ad_account_id). It exits 1 when the configured
// account is missing from the list or does not allow audience management,
// so that it doubles as a check before `pinsync run`.
func runAccounts(ctx context.Context, io *stdio, args []string) int {
	fs := flagSet(io, "accounts", "usage: pinsync accounts --config FILE [flags]\n\nLists the ad accounts the stored token reaches and whether each lets pinsync\nmanage audiences. Exit status 1 when the configured account cannot.")
	path := fs.String("config", io.Getenv("PINSYNC_CONFIG"), "configuration file (YAML); only the pinterest section is needed; PINSYNC_PINTEREST_* variables override it")
	baseURL := fs.String("base-url", "", "Pinterest API origin (e.g. a `pinsync sandbox`)")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	if status, ok := parseFlags(io, fs, args); !ok {
		return status
	}
	cfg, err := loadPinterestConfig(*path, io.Getenv, *baseURL, "")
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync accounts: invalid configuration:\n%s\n", indent(err.Error()))
		return 2
	}
	pc := cfg.Pinterest
	store, closeStore, err := openTokenStore(ctx, io, cfg)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync accounts: %v\n", err)
		return 2
	}
	defer closeStore()
	pin, err := newPinterestClient(pc, store)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync accounts: %v\n", err)
		return 2
	}
	accts, err := pin.AdAccounts(ctx)
	if err != nil {
		fmt.Fprintf(io.Err, "pinsync accounts: %v\n", err)
		return 1
	}
	rows := make([]accountJSON, len(accts))
	found := false
	for i, a := range accts {
		rows[i] = accountJSON{ID: a.ID, Name: a.Name, Country: a.Country, Currency: a.Currency,
			Permissions: a.Permissions, CanManageAudiences: a.CanManageAudiences(),
			Configured: a.ID == pc.AdAccountID}
		if rows[i].Permissions == nil {
			rows[i].Permissions = []string{}
		}
		found = found || rows[i].Configured
	}
	if *asJSON {
		enc := json.NewEncoder(io.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rows); err != nil {
			fmt.Fprintf(io.Err, "pinsync accounts: %v\n", err)
			return 1
		}
	} else {
		printAccounts(io, rows)
	}
	return checkConfigured(io, pc.AdAccountID, found, rows)
}

func printAccounts(io *stdio, rows []accountJSON) {
	if len(rows) == 0 {
		fmt.Fprintln(io.Out, "The token reaches no ad account.")
		return
	}
	tw := tabwriter.NewWriter(io.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\tNAME\tID\tCURRENCY\tAUDIENCES\tPERMISSIONS")
	for _, r := range rows {
		mark, manage := "", "no"
		if r.Configured {
			mark = "*"
		}
		if r.CanManageAudiences {
			manage = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", mark, tabSafe(r.Name), r.ID, r.Currency, manage, strings.Join(r.Permissions, ","))
	}
	_ = tw.Flush()
	fmt.Fprintln(io.Out, "\nAUDIENCES: whether the roles let pinsync manage customer lists and audiences (OWNER, ADMIN or AUDIENCE_MANAGER).")
	if anyConfigured(rows) {
		fmt.Fprintln(io.Out, "* the configured account (pinterest.ad_account_id)")
	}
}

// checkConfigured reports, on stderr and in the exit status, a configured
// ad account the token cannot reach or cannot manage audiences on.
func checkConfigured(io *stdio, id string, found bool, rows []accountJSON) int {
	switch {
	case id == "":
		fmt.Fprintln(io.Err, "pinsync accounts: no pinterest.ad_account_id is configured; set it to one of the accounts above that can manage audiences")
		return 0
	case !found:
		fmt.Fprintf(io.Err, "pinsync accounts: the configured ad account %s (pinterest.ad_account_id) is not among the accounts this token reaches; "+
			"authorise as a user with access to it (`pinsync auth`) or correct the id\n", id)
		return 1
	}
	for _, r := range rows {
		if r.Configured && !r.CanManageAudiences {
			fmt.Fprintf(io.Err, "pinsync accounts: %v\n", &pinterest.PermissionError{AdAccountID: id, Permissions: r.Permissions})
			return 1
		}
	}
	return 0
}

func anyConfigured(rows []accountJSON) bool {
	for _, r := range rows {
		if r.Configured {
			return true
		}
	}
	return false
}

// tabSafe keeps an account name from breaking the table's columns.
func tabSafe(s string) string {
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}
