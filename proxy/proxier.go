package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Backend programs virtual servers into the kernel. Implementations touch
// only what they own, and apply the changes they are given instead of
// rebuilding everything.
type Backend interface {
	// Init creates the objects rules hang off (tables, base chains, dummy
	// interface, sysctls). Idempotent.
	Init(ctx context.Context) error
	// Read returns the virtual servers the backend finds in the kernel,
	// draining endpoints (weight 0) included.
	Read(ctx context.Context) (RuleSet, error)
	// Apply makes p.Changes, each of which moves one virtual server from
	// Old (what Read or an earlier Apply left) to New.
	Apply(ctx context.Context, p Plan) error
	// Cleanup removes everything the backend owns (mode switch, uninstall).
	Cleanup(ctx context.Context) error
}

// Plan is one sync's work for a Backend: only what changed, in key order,
// so a sync costs the backend work proportional to the change, not to the
// number of Services.
type Plan struct {
	Changes []Change
}

// Checker is implemented by backends that can tell cheaply whether the
// kernel still holds what they last applied (nobody deleted or added
// objects behind their back). Check may run concurrently with Apply; when
// it cannot tell (an Apply ran meanwhile) it reports true and is asked again
// next time. The Proxier then reads the kernel fully (Read) only when Check
// reports drift, instead of every ResyncInterval.
type Checker interface {
	Check(ctx context.Context) (ok bool, err error)
}

// ErrNotSynced: Sync was called before both the services and the endpoints
// were listed; syncing then would delete the rules of everything not yet
// seen.
var ErrNotSynced = errors.New("proxy: services and endpoints not listed yet")

// Config configures a Proxier. Zero values take the defaults.
type Config struct {
	Backend Backend
	Log     *slog.Logger
	// MinSyncInterval coalesces updates: syncs start at most this often
	// (default 50ms; kube-proxy's 1s is too slow for the 200ms propagation
	// goal).
	MinSyncInterval time.Duration
	// DrainTimeout is how long a removed or unready endpoint stays at weight
	// 0 before its rules are deleted (default 15s; negative: delete at once).
	DrainTimeout time.Duration
	// ResyncInterval is how often the kernel is checked for drift (default
	// 30s): with a Checker backend, a cheap check off the sync path, and a
	// full Read only if it finds drift; otherwise a full Read.
	ResyncInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Proxier keeps one node's kernel rules in step with Services and Endpoints.
// Updates (the On*/Replace* methods) only record the new objects, mark their
// Service dirty and wake the sync loop; Run turns bursts of them into one
// sync, which recomputes the dirty Services only and applies the difference.
type Proxier struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	services  map[string]*corev1.Service
	endpoints map[string]*corev1.Endpoints
	dirty     map[string]bool // Services whose objects changed since the last sync
	svcListed bool
	epListed  bool
	wake      chan struct{}
	// drift is set when a Check found the kernel changed behind our back.
	drift    atomic.Bool
	checking atomic.Bool

	syncMu    sync.Mutex // one sync at a time; guards the fields below
	model     *model     // the desired state, Service by Service
	applied   RuleSet    // what the kernel holds; nil: unknown, read it first
	drains    *drains
	nextDrain time.Time
	stats     Stats
}

// Stats counts what the Proxier did.
type Stats struct {
	Syncs      int           // syncs that changed something
	Changes    int           // virtual servers added, updated or removed
	Errors     int           // failed syncs
	LastSync   time.Duration // duration of the last sync that changed something
	Problems   []error       // what the desired state leaves out, and why
	FullReads  int           // kernel state reads
	Checks     int           // cheap drift checks (Checker backends)
	LastChange time.Time
}

// New returns a Proxier; Run (or Sync) does the work.
func New(cfg Config) *Proxier {
	if cfg.MinSyncInterval == 0 {
		cfg.MinSyncInterval = 50 * time.Millisecond
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 15 * time.Second
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Proxier{cfg: cfg, log: log, services: map[string]*corev1.Service{},
		endpoints: map[string]*corev1.Endpoints{}, dirty: map[string]bool{}, wake: make(chan struct{}, 1),
		model: newModel(), drains: newDrains(cfg.DrainTimeout)}
}

func nsName(ns, name string) string { return ns + "/" + name }

func (p *Proxier) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// OnService records a created or updated Service.
func (p *Proxier) OnService(s *corev1.Service) {
	p.mu.Lock()
	p.services[nsName(s.Namespace, s.Name)] = s
	p.dirty[nsName(s.Namespace, s.Name)] = true
	p.mu.Unlock()
	p.poke()
}

// OnServiceDelete records a deleted Service.
func (p *Proxier) OnServiceDelete(namespace, name string) {
	p.mu.Lock()
	delete(p.services, nsName(namespace, name))
	p.dirty[nsName(namespace, name)] = true
	p.mu.Unlock()
	p.poke()
}

// OnEndpoints records created or updated Endpoints.
func (p *Proxier) OnEndpoints(e *corev1.Endpoints) {
	p.mu.Lock()
	p.endpoints[nsName(e.Namespace, e.Name)] = e
	p.dirty[nsName(e.Namespace, e.Name)] = true
	p.mu.Unlock()
	p.poke()
}

// OnEndpointsDelete records deleted Endpoints.
func (p *Proxier) OnEndpointsDelete(namespace, name string) {
	p.mu.Lock()
	delete(p.endpoints, nsName(namespace, name))
	p.dirty[nsName(namespace, name)] = true
	p.mu.Unlock()
	p.poke()
}

// ReplaceServices sets the complete list of Services (a list or relist) and
// marks them listed.
func (p *Proxier) ReplaceServices(list []*corev1.Service) {
	m := make(map[string]*corev1.Service, len(list))
	for _, s := range list {
		m[nsName(s.Namespace, s.Name)] = s
	}
	p.mu.Lock()
	markReplaced(p.dirty, p.services, m)
	p.services, p.svcListed = m, true
	p.mu.Unlock()
	p.poke()
}

// ReplaceEndpoints sets the complete list of Endpoints and marks them listed.
func (p *Proxier) ReplaceEndpoints(list []*corev1.Endpoints) {
	m := make(map[string]*corev1.Endpoints, len(list))
	for _, e := range list {
		m[nsName(e.Namespace, e.Name)] = e
	}
	p.mu.Lock()
	markReplaced(p.dirty, p.endpoints, m)
	p.endpoints, p.epListed = m, true
	p.mu.Unlock()
	p.poke()
}

// markReplaced marks dirty the names whose object a relist added, removed
// or changed (a relist that brings nothing new costs no recomputation).
func markReplaced[T interface{ GetResourceVersion() string }](dirty map[string]bool, old, new map[string]T) {
	for n, o := range old {
		if c, ok := new[n]; !ok || c.GetResourceVersion() != o.GetResourceVersion() || o.GetResourceVersion() == "" {
			dirty[n] = true
		}
	}
	for n := range new {
		if _, ok := old[n]; !ok {
			dirty[n] = true
		}
	}
}

// dirtyService is the current state of one dirty Service's objects.
type dirtyService struct {
	svc *corev1.Service
	ep  *corev1.Endpoints
}

// takeDirty returns the dirty Services' objects and clears the marks, once
// both lists are in (before that it leaves them marked).
func (p *Proxier) takeDirty() (map[string]dirtyService, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.svcListed || !p.epListed {
		return nil, false
	}
	out := make(map[string]dirtyService, len(p.dirty))
	for n := range p.dirty {
		out[n] = dirtyService{p.services[n], p.endpoints[n]}
	}
	clear(p.dirty)
	return out, true
}

// Sync brings the kernel to the desired state now. With full, after a Check
// found drift, or when the kernel state is unknown (first sync, after an
// error), it reads the kernel first and compares every virtual server, so
// stale rules the backend owns are removed and drift is repaired; otherwise
// it looks only at the virtual servers of the Services that changed and at
// draining endpoints.
func (p *Proxier) Sync(ctx context.Context, full bool) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	work, listed := p.takeDirty()
	if !listed {
		return ErrNotSynced
	}
	start := time.Now()
	touched := map[Key]bool{}
	for name, o := range work {
		p.model.update(name, o.svc, o.ep, touched)
	}
	if len(work) > 0 {
		p.stats.Problems = p.model.problems()
	}
	if p.drift.Swap(false) {
		full = true
	}
	if p.applied == nil || full {
		if err := p.cfg.Backend.Init(ctx); err != nil {
			p.stats.Errors++
			return fmt.Errorf("proxy: init: %w", err)
		}
		cur, err := p.cfg.Backend.Read(ctx)
		if err != nil {
			p.stats.Errors++
			return fmt.Errorf("proxy: read kernel state: %w", err)
		}
		p.applied = cur
		p.stats.FullReads++
		for k := range cur {
			touched[k] = true
		}
		for k := range p.model.desired {
			touched[k] = true
		}
	}
	for _, k := range p.drains.keys() {
		touched[k] = true
	}
	keys := make([]Key, 0, len(touched))
	for k := range touched {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, Key.Compare)
	now := p.cfg.Now()
	var changes []Change
	for _, k := range keys {
		a := p.applied[k]
		d := p.drains.apply(k, a, p.model.desired[k], now)
		switch {
		case a == nil && d == nil:
		case a == nil:
			changes = append(changes, Change{Op: Add, Key: k, New: d})
		case d == nil:
			changes = append(changes, Change{Op: Remove, Key: k, Old: a})
		case !a.Equal(d):
			changes = append(changes, Change{Op: Update, Key: k, Old: a, New: d})
		}
	}
	p.nextDrain = p.drains.next()
	if len(changes) == 0 {
		return nil
	}
	if err := p.cfg.Backend.Apply(ctx, Plan{Changes: changes}); err != nil {
		p.applied = nil // the kernel may hold part of it: read it again
		p.stats.Errors++
		return fmt.Errorf("proxy: apply %d changes: %w", len(changes), err)
	}
	for _, c := range changes {
		if c.Op == Remove {
			delete(p.applied, c.Key)
		} else {
			p.applied[c.Key] = c.New
		}
	}
	p.stats.Syncs++
	p.stats.Changes += len(changes)
	p.stats.LastSync = time.Since(start)
	p.stats.LastChange = p.cfg.Now()
	p.log.Debug("proxy synced", "changes", len(changes), "virtualServers", len(p.applied), "took", p.stats.LastSync)
	return nil
}

// check runs the backend's drift check off the sync path (at most one at a
// time); drift makes the next sync read the kernel.
func (p *Proxier) check(ctx context.Context, c Checker) {
	if !p.checking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer p.checking.Store(false)
		ok, err := c.Check(ctx)
		p.syncMu.Lock()
		p.stats.Checks++
		p.syncMu.Unlock()
		if err != nil && ctx.Err() == nil {
			p.log.Warn("proxy: kernel check failed; reading the kernel", "err", err)
		}
		if (!ok || err != nil) && ctx.Err() == nil {
			if err == nil {
				p.log.Info("proxy: kernel rules changed behind the proxy; reading and repairing them")
			}
			p.drift.Store(true)
			p.poke()
		}
	}()
}

// Applied returns a copy of what the last successful sync programmed.
func (p *Proxier) Applied() RuleSet {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	return p.applied.Clone()
}

// Stats returns the counters.
func (p *Proxier) Stats() Stats {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	return p.stats
}

// Run syncs until ctx ends: after updates (at most once per
// MinSyncInterval), when a draining endpoint is due to go, and fully when
// the kernel drifted (checked every ResyncInterval, see Checker). The first sync waits until services and endpoints have
// been listed, so a restarted proxy never removes rules it has not yet been
// told about, and it starts from what the kernel holds.
func (p *Proxier) Run(ctx context.Context) error {
	resync := time.NewTicker(p.cfg.ResyncInterval)
	defer resync.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var last time.Time
	full := true
	retry := 100 * time.Millisecond
	for {
		wait := time.Hour
		p.syncMu.Lock()
		if !p.nextDrain.IsZero() {
			wait = max(p.nextDrain.Sub(p.cfg.Now()), 0)
		}
		p.syncMu.Unlock()
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-timer.C:
		case <-resync.C:
			if c, ok := p.cfg.Backend.(Checker); ok && !full {
				p.check(ctx, c)
				continue
			}
			full = true
		}
		if d := p.cfg.MinSyncInterval - time.Since(last); d > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		}
		last = time.Now()
		switch err := p.Sync(ctx, full); {
		case errors.Is(err, ErrNotSynced):
		case err != nil:
			p.log.Warn("proxy sync failed, will retry", "err", err)
			full = true
			time.AfterFunc(retry, p.poke)
			retry = min(retry*2, 5*time.Second)
		default:
			full = false
			retry = 100 * time.Millisecond
		}
	}
}
