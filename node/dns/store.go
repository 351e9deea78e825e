package dns

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
)

// Store holds what the cluster zone is answered from: the Services and
// Endpoints it was given, and an index of the names they make.
//
// Updates rebuild only the entry of the Service they touch and swap it into
// the index under a short write lock; a lookup holds the read lock only while
// it copies out what it answers, so queries never wait for an update's work.
type Store struct {
	zone    string // canonical, with the trailing dot: "cluster.local."
	dotZone string // "." + zone: names below the apex end with it

	mu        sync.Mutex // serialises writers; guards the fields below
	services  map[svcKey]*corev1.Service
	endpoints map[svcKey]*corev1.Endpoints
	svcListed bool
	epListed  bool

	rmu    sync.RWMutex // guards the fields below for readers
	ix     *index
	synced bool   // both lists seen: before that, the zone is unknown, not empty
	serial uint32 // the SOA serial: bumped by every change

	rotate atomic.Uint32 // spreads multi-address answers across their addresses
}

type svcKey struct{ ns, name string }

// index maps names to answers. The maps are changed in place under rmu;
// the *service values and the ptr slices are never changed once published.
type index struct {
	services   map[svcKey]*service
	namespaces map[string]int // namespace -> number of Services in it
	ptr        map[netip.Addr][]string
}

func newIndex() *index {
	return &index{services: map[svcKey]*service{}, namespaces: map[string]int{}, ptr: map[netip.Addr][]string{}}
}

// service is what one Service (and, when headless, its Endpoints) answers.
type service struct {
	fqdn   string                  // <name>.<ns>.svc.<zone>
	ips    []netip.Addr            // A records of the Service name
	hosts  map[string][]netip.Addr // headless: endpoint label -> A records
	srv    map[string][]srvTarget  // "_<port>._<proto>" -> SRV targets
	protos map[string]bool         // "_<proto>" labels with SRV records below
	ptrs   []ptrRecord
}

type srvTarget struct {
	label string // "" for the Service name itself, else the endpoint label
	port  uint16
}

type ptrRecord struct {
	ip     netip.Addr
	target string
}

// DefaultZone is the cluster domain unless configured otherwise.
const DefaultZone = "cluster.local"

// NewStore returns an empty store for zone ("" for DefaultZone). Until both
// ReplaceServices and ReplaceEndpoints have been called, names in the zone
// are answered SERVFAIL.
func NewStore(zone string) *Store {
	z := canonicalZone(zone)
	return &Store{zone: z, dotZone: "." + z, services: map[svcKey]*corev1.Service{},
		endpoints: map[svcKey]*corev1.Endpoints{}, ix: newIndex()}
}

func canonicalZone(zone string) string {
	zone = strings.Trim(strings.ToLower(zone), ".")
	if zone == "" {
		zone = DefaultZone
	}
	return zone + "."
}

// Zone is the cluster zone, fully qualified ("cluster.local.").
func (s *Store) Zone() string { return s.zone }

// Synced reports whether both Services and Endpoints have been listed.
func (s *Store) Synced() bool {
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	return s.synced
}

// OnService records a created or updated Service.
func (s *Store) OnService(svc *corev1.Service) {
	k := svcKey{svc.Namespace, svc.Name}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services[k] = svc
	s.refresh(k)
}

// OnServiceDelete records a deleted Service.
func (s *Store) OnServiceDelete(namespace, name string) {
	k := svcKey{namespace, name}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.services, k)
	s.refresh(k)
}

// OnEndpoints records created or updated Endpoints.
func (s *Store) OnEndpoints(e *corev1.Endpoints) {
	k := svcKey{e.Namespace, e.Name}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints[k] = e
	if svc := s.services[k]; svc != nil && isHeadless(svc) {
		s.refresh(k) // only headless Services answer from their Endpoints
	}
}

// OnEndpointsDelete records deleted Endpoints.
func (s *Store) OnEndpointsDelete(namespace, name string) {
	k := svcKey{namespace, name}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.endpoints, k)
	if svc := s.services[k]; svc != nil && isHeadless(svc) {
		s.refresh(k)
	}
}

// ReplaceServices sets the complete list of Services (a list or relist).
func (s *Store) ReplaceServices(list []*corev1.Service) {
	m := make(map[svcKey]*corev1.Service, len(list))
	for _, svc := range list {
		m[svcKey{svc.Namespace, svc.Name}] = svc
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services, s.svcListed = m, true
	s.rebuild()
}

// ReplaceEndpoints sets the complete list of Endpoints.
func (s *Store) ReplaceEndpoints(list []*corev1.Endpoints) {
	m := make(map[svcKey]*corev1.Endpoints, len(list))
	for _, e := range list {
		m[svcKey{e.Namespace, e.Name}] = e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endpoints, s.epListed = m, true
	s.rebuild()
}

// refresh recomputes the entry of one Service; s.mu is held.
func (s *Store) refresh(k svcKey) {
	var e *service
	if svc := s.services[k]; svc != nil {
		e = buildService(s.zone, svc, s.endpoints[k])
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.ix.remove(k)
	if e != nil {
		s.ix.add(k, e)
	}
	s.serial++
}

// rebuild recomputes the whole index and swaps it in; s.mu is held.
func (s *Store) rebuild() {
	ix := newIndex()
	for k, svc := range s.services {
		ix.add(k, buildService(s.zone, svc, s.endpoints[k]))
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.ix = ix
	s.synced = s.svcListed && s.epListed
	s.serial++
}

func (ix *index) add(k svcKey, e *service) {
	ix.services[k] = e
	ix.namespaces[k.ns]++
	for _, p := range e.ptrs {
		old := ix.ptr[p.ip]
		ix.ptr[p.ip] = append(old[:len(old):len(old)], p.target) // never append into a published slice
	}
}

func (ix *index) remove(k svcKey) {
	e := ix.services[k]
	if e == nil {
		return
	}
	delete(ix.services, k)
	if ix.namespaces[k.ns]--; ix.namespaces[k.ns] <= 0 {
		delete(ix.namespaces, k.ns)
	}
	for _, p := range e.ptrs {
		old := ix.ptr[p.ip]
		kept := make([]string, 0, len(old))
		for _, t := range old {
			if t != p.target {
				kept = append(kept, t)
			}
		}
		if len(kept) == 0 {
			delete(ix.ptr, p.ip)
		} else {
			ix.ptr[p.ip] = kept
		}
	}
}

func isHeadless(svc *corev1.Service) bool { return svc.Spec.ClusterIP == corev1.ClusterIPNone }
