package sandbox

import (
	"net/http"
	"strconv"
	"time"
)

// window is a fixed one-minute rate-limit window for one user and category.
type window struct {
	start time.Time
	used  int
	// rejected counts calls refused because the budget was spent.
	rejected int
}

// rateInfo is what the x-ratelimit-* headers say about one call.
type rateInfo struct {
	limited   bool // the category has a limit (headers are set only then)
	limit     int
	remaining int
	reset     time.Duration
	exceeded  bool
}

// set writes x-ratelimit-limit, x-ratelimit-remaining and x-ratelimit-reset
// (whole seconds until the window resets, at least 1).
func (ri rateInfo) set(h http.Header) {
	if !ri.limited {
		return
	}
	secs := int((ri.reset + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	h.Set("x-ratelimit-limit", strconv.Itoa(ri.limit))
	h.Set("x-ratelimit-remaining", strconv.Itoa(ri.remaining))
	h.Set("x-ratelimit-reset", strconv.Itoa(secs))
}

func (s *Server) budget(category string) int {
	switch category {
	case CategoryAdsWrite:
		return s.cfg.WritesPerMinute
	case CategoryAdsRead:
		return s.cfg.ReadsPerMinute
	}
	return -1
}

func (s *Server) windowLocked(user, category string, now time.Time) *window {
	key := user + "/" + category
	w := s.windows[key]
	if w == nil {
		w = &window{start: now}
		s.windows[key] = w
	}
	if !now.Before(w.start.Add(time.Minute)) {
		w.start, w.used = now, 0
	}
	return w
}

// takeLocked spends one call of the category's budget.
func (s *Server) takeLocked(user, category string, now time.Time) rateInfo {
	limit := s.budget(category)
	if limit < 0 {
		return rateInfo{}
	}
	w := s.windowLocked(user, category, now)
	ri := rateInfo{limited: true, limit: limit, reset: w.start.Add(time.Minute).Sub(now)}
	if w.used >= limit {
		w.rejected++
		ri.exceeded = true
		return ri
	}
	w.used++
	ri.remaining = limit - w.used
	return ri
}

// peekLocked reports the budget without spending it.
func (s *Server) peekLocked(user, category string, now time.Time) rateInfo {
	limit := s.budget(category)
	if limit < 0 {
		return rateInfo{}
	}
	w := s.windowLocked(user, category, now)
	return rateInfo{limited: true, limit: limit, remaining: max(limit-w.used, 0), reset: w.start.Add(time.Minute).Sub(now)}
}

type faultKind int

const (
	faultNone faultKind = iota
	faultOutage
	faultThrottle
	faultError
)

type injected struct {
	kind       faultKind
	status     int
	afterApply bool
	noHeaders  bool
}

// injectedFaultLocked decides whether this call fails by injection. api
// is false for the OAuth endpoint, which only suffers outages.
func (s *Server) injectedFaultLocked(now time.Time, api bool) injected {
	if now.Before(s.outageEnd) {
		s.injected++
		return injected{kind: faultOutage}
	}
	if !api {
		return injected{}
	}
	if s.faults.Throttle > 0 {
		s.faults.Throttle--
		s.injected++
		return injected{kind: faultThrottle, noHeaders: s.faults.ThrottleWithoutHeaders}
	}
	if s.faults.ErrorRate > 0 && s.rng.Float64() < s.faults.ErrorRate {
		st := s.faults.ErrorStatus
		if st == 0 {
			st = http.StatusInternalServerError
		}
		s.injected++
		return injected{kind: faultError, status: st, afterApply: s.faults.ErrorAfterApply}
	}
	return injected{}
}

// SetFaults replaces the injected faults; an Outage starts now.
func (s *Server) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setFaultsLocked(f, s.cfg.Now())
	return nil
}

func (s *Server) setFaultsLocked(f Faults, now time.Time) {
	s.faults = f
	s.outageEnd = time.Time{}
	if f.Outage > 0 {
		s.outageEnd = now.Add(f.Outage)
	}
}

// Faults returns the faults in force: Outage is the time left and Throttle
// the injected 429s left.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	f.Outage = 0
	if left := s.outageEnd.Sub(s.cfg.Now()); left > 0 {
		f.Outage = left
	}
	return f
}
