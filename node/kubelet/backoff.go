package kubelet

import "time"

// Backoff is an exponential restart delay: Initial, doubling up to Max,
// forgotten once the thing it delays has run for Reset without failing.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Reset   time.Duration
}

// DefaultCrashLoopBackoff is Kubernetes' container restart backoff.
var DefaultCrashLoopBackoff = Backoff{Initial: 10 * time.Second, Max: 5 * time.Minute, Reset: 10 * time.Minute}

// backoffEntry tracks one container (or image) of one pod.
type backoffEntry struct {
	delay     time.Duration // wait after the next failure
	lastStart time.Time     // when the delay last let it start
}

// backoffs holds a pod worker's entries; the worker is their only user.
//
// The rules are kubelet's: the first restart after a failure is immediate
// and arms Initial; every later failure waits the armed delay, counted
// from when it failed, and doubles it up to Max. A container that ran for
// Reset before failing starts over as if it had never failed.
type backoffs struct {
	cfg     Backoff
	entries map[string]*backoffEntry
}

func newBackoffs(cfg Backoff) *backoffs {
	return &backoffs{cfg: cfg, entries: map[string]*backoffEntry{}}
}

// wait returns how long, from now, a restart of key that failed at
// failedAt must still wait (0: it may start now).
func (b *backoffs) wait(key string, failedAt, now time.Time) time.Duration {
	e := b.entries[key]
	if e == nil {
		return 0
	}
	if !e.lastStart.IsZero() && failedAt.Sub(e.lastStart) >= b.cfg.Reset {
		delete(b.entries, key)
		return 0
	}
	if d := failedAt.Add(e.delay).Sub(now); d > 0 {
		return d
	}
	return 0
}

// started records a (re)start of key at now that wait allowed, and arms
// the delay for its next failure.
func (b *backoffs) started(key string, now time.Time) {
	e := b.entries[key]
	if e == nil {
		b.entries[key] = &backoffEntry{delay: b.cfg.Initial, lastStart: now}
		return
	}
	e.delay = min(2*e.delay, b.cfg.Max)
	e.lastStart = now
}

// forget drops key (the container went away, or succeeded).
func (b *backoffs) forget(key string) { delete(b.entries, key) }

// reset drops every entry (the pod got a new sandbox: nothing failed).
func (b *backoffs) reset() { clear(b.entries) }
