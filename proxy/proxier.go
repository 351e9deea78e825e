package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
	// Apply moves the kernel from p.From (what Read or the last Apply left)
	// to p.To by making p.Changes.
	Apply(ctx context.Context, p Plan) error
	// Cleanup removes everything the backend owns (mode switch, uninstall).
	Cleanup(ctx context.Context) error
}

// Plan is one sync's work for a Backend.
type Plan struct {
	From, To RuleSet
	Changes  []Change
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
	// ResyncInterval is how often the kernel is read again and any drift
	// corrected (default 30s).
	ResyncInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Proxier keeps one node's kernel rules in step with Services and Endpoints.
// Updates (the On*/Replace* methods) only record the new objects and wake the
// sync loop; Run turns bursts of them into one sync.
type Proxier struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	services  map[string]*corev1.Service
	endpoints map[string]*corev1.Endpoints
	svcListed bool
	epListed  bool
	wake      chan struct{}

	syncMu    sync.Mutex // one sync at a time; guards the fields below
	applied   RuleSet    // nil: unknown, read the kernel first
	since     map[drainKey]time.Time
	nextDrain time.Time
	stats     Stats
}

// Stats counts what the Proxier did.
type Stats struct {
	Syncs      int           // syncs that changed something
	Changes    int           // virtual servers added, updated or removed
	Errors     int           // failed syncs
	LastSync   time.Duration // duration of the last sync that changed something
	Problems   []error       // what the last Compute left out
	FullReads  int           // kernel state reads
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
		endpoints: map[string]*corev1.Endpoints{}, wake: make(chan struct{}, 1),
		since: map[drainKey]time.Time{}}
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
	p.mu.Unlock()
	p.poke()
}

// OnServiceDelete records a deleted Service.
func (p *Proxier) OnServiceDelete(namespace, name string) {
	p.mu.Lock()
	delete(p.services, nsName(namespace, name))
	p.mu.Unlock()
	p.poke()
}

// OnEndpoints records created or updated Endpoints.
func (p *Proxier) OnEndpoints(e *corev1.Endpoints) {
	p.mu.Lock()
	p.endpoints[nsName(e.Namespace, e.Name)] = e
	p.mu.Unlock()
	p.poke()
}

// OnEndpointsDelete records deleted Endpoints.
func (p *Proxier) OnEndpointsDelete(namespace, name string) {
	p.mu.Lock()
	delete(p.endpoints, nsName(namespace, name))
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
	p.endpoints, p.epListed = m, true
	p.mu.Unlock()
	p.poke()
}

func (p *Proxier) snapshot() ([]*corev1.Service, []*corev1.Endpoints, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	svcs := make([]*corev1.Service, 0, len(p.services))
	for _, s := range p.services {
		svcs = append(svcs, s)
	}
	eps := make([]*corev1.Endpoints, 0, len(p.endpoints))
	for _, e := range p.endpoints {
		eps = append(eps, e)
	}
	return svcs, eps, p.svcListed && p.epListed
}

// Sync brings the kernel to the desired state now. With full, or when the
// kernel state is unknown (first sync, after an error), it reads the kernel
// first, so stale rules the backend owns are removed and drift is repaired.
func (p *Proxier) Sync(ctx context.Context, full bool) error {
	svcs, eps, listed := p.snapshot()
	if !listed {
		return ErrNotSynced
	}
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
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
	}
	start := time.Now()
	desired, problems := Compute(svcs, eps)
	p.stats.Problems = problems
	desired, p.since, p.nextDrain = withDraining(p.applied, desired, p.since, p.cfg.Now(), p.cfg.DrainTimeout)
	changes := Diff(p.applied, desired)
	if len(changes) == 0 {
		return nil
	}
	if err := p.cfg.Backend.Apply(ctx, Plan{From: p.applied, To: desired, Changes: changes}); err != nil {
		p.applied = nil // the kernel may hold part of it: read it again
		p.stats.Errors++
		return fmt.Errorf("proxy: apply %d changes: %w", len(changes), err)
	}
	p.applied = desired
	p.stats.Syncs++
	p.stats.Changes += len(changes)
	p.stats.LastSync = time.Since(start)
	p.stats.LastChange = p.cfg.Now()
	p.log.Debug("proxy synced", "changes", len(changes), "virtualServers", len(desired), "took", p.stats.LastSync)
	return nil
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
// MinSyncInterval), when a draining endpoint is due to go, and fully every
// ResyncInterval. The first sync waits until services and endpoints have
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
