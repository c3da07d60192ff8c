package sink

import (
	"context"
	"log/slog"
	"time"
)

// poller reads, for each list the member owns, what Pinterest reports of
// its audience (the size counts matched users, not uploaded records) and
// when Pinterest created the list.
type poller struct {
	pin      AudienceReader
	dir      *directory
	owned    Owned
	interval time.Duration // never when negative
	m        *metrics
	log      *slog.Logger
}

// run polls every interval until ctx ends.
func (p *poller) run(ctx context.Context) {
	if p.interval < 0 {
		return
	}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.poll(ctx)
		}
	}
}

// poll refreshes each owned list's audience size and status from
// Pinterest.
func (p *poller) poll(ctx context.Context) {
	owned := p.dir.of(p.owned())
	p.readListCreation(ctx, owned)
	for _, li := range owned {
		ids := li.ids()
		if ids.audienceID == "" || ctx.Err() != nil {
			continue
		}
		au, err := p.pin.Audience(ctx, li.adAccount(), ids.audienceID)
		if err != nil {
			p.log.Warn("audience poll failed", "audience", li.key.Audience, "list_type", li.key.Type.String(), "err", err)
			continue
		}
		li.setAudience(au)
		var size float64
		if au.Size != nil {
			size = float64(*au.Size)
		}
		ready := 0.0
		if au.Status == "READY" {
			ready = 1
		}
		p.m.pinSize.WithLabelValues(li.key.Audience, li.key.Type.String()).Set(size)
		p.m.pinReady.WithLabelValues(li.key.Audience, li.key.Type.String()).Set(ready)
		if c := li.created(); !c.IsZero() {
			p.m.listCreated.WithLabelValues(li.key.Audience, li.key.Type.String()).Set(float64(c.Unix()))
		}
	}
}

// readListCreation learns when Pinterest created each of lists whose
// creation is not known yet (a list is judged by its match rate only once
// Pinterest has had a day or two to match it): one listing of each ad
// account concerned, once per list.
func (p *poller) readListCreation(ctx context.Context, lists []*list) {
	need := map[string]map[string][]*list{} // account → list id → lists
	for _, li := range lists {
		if acct, id, unknown := li.creationUnknown(); unknown {
			if need[acct] == nil {
				need[acct] = map[string][]*list{}
			}
			need[acct][id] = append(need[acct][id], li)
		}
	}
	for acct, byID := range need {
		if ctx.Err() != nil {
			return
		}
		all, err := p.pin.CustomerLists(ctx, acct)
		if err != nil {
			p.log.Warn("customer list listing failed", "ad_account", acct, "err", err)
			continue
		}
		for _, cl := range all {
			for _, li := range byID[cl.ID] {
				if cl.CreatedTime > 0 {
					li.setListCreated(cl.ID, time.Unix(int64(cl.CreatedTime), 0))
				}
			}
		}
	}
}
