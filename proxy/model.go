package proxy

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// model is the desired rule set kept up to date Service by Service: a
// change to one Service or its Endpoints recomputes that Service's virtual
// servers only, and reports the keys whose desired state may have changed,
// so a sync at 10,000 Services does work proportional to what changed.
//
// Two Services claiming one virtual server (possible for a moment with
// stale reads) resolve as Compute documents: the Service first in
// namespace/name order wins, whatever order the updates came in.
type model struct {
	services map[string]serviceRules // "namespace/name" -> what it asks for
	claims   map[Key][]string        // claimants of each key, sorted
	desired  RuleSet                 // each claimed key -> its winner's virtual server
	// problemServices are the Services with problems of their own or a
	// lost claim (for Problems without a walk over every Service).
	problemServices map[string]bool
}

// serviceRules is one Service's share of the desired state.
type serviceRules struct {
	all      []*VirtualServer // as computeService made them, in port order
	vss      []*VirtualServer // all but repeated keys (the first one stays)
	problems []error          // computeService's
}

func newModel() *model {
	return &model{services: map[string]serviceRules{}, claims: map[Key][]string{}, desired: RuleSet{},
		problemServices: map[string]bool{}}
}

// update recomputes the Service name ("namespace/name") from its current
// objects (svc nil: deleted) and adds every key whose desired state may
// have changed to touched.
func (m *model) update(name string, svc *corev1.Service, ep *corev1.Endpoints, touched map[Key]bool) {
	old := m.services[name]
	var next serviceRules
	if svc != nil {
		next.all, next.problems = computeService(svc, ep)
		// One Service naming a key twice: the first port wins, as between
		// Services.
		seen := map[Key]bool{}
		for _, v := range next.all {
			if !seen[v.Key] {
				seen[v.Key] = true
				next.vss = append(next.vss, v)
			}
		}
	}
	for _, v := range old.vss {
		m.unclaim(v.Key, name)
		touched[v.Key] = true
	}
	if svc == nil {
		delete(m.services, name)
	} else {
		m.services[name] = next
	}
	for _, v := range next.vss {
		m.claim(v.Key, name)
		touched[v.Key] = true
	}
	m.noteProblems(name)
	for _, v := range old.vss {
		m.resolve(v.Key)
	}
	for _, v := range next.vss {
		m.resolve(v.Key)
	}
}

func (m *model) claim(k Key, name string) {
	c := m.claims[k]
	i, found := slices.BinarySearch(c, name)
	if !found {
		m.claims[k] = slices.Insert(c, i, name)
	}
}

func (m *model) unclaim(k Key, name string) {
	c := m.claims[k]
	if i, found := slices.BinarySearch(c, name); found {
		c = slices.Delete(c, i, i+1)
	}
	if len(c) == 0 {
		delete(m.claims, k)
	} else {
		m.claims[k] = c
	}
}

// resolve sets desired[k] to the winning claimant's virtual server and
// keeps the losers' problem marks current.
func (m *model) resolve(k Key) {
	c := m.claims[k]
	if len(c) == 0 {
		delete(m.desired, k)
		return
	}
	m.desired[k] = m.services[c[0]].vs(k)
	for _, loser := range c[1:] {
		m.problemServices[loser] = true
	}
}

func (m *model) noteProblems(name string) {
	if r := m.services[name]; len(r.problems) > 0 || len(r.all) != len(r.vss) {
		m.problemServices[name] = true
	}
}

func (r serviceRules) vs(k Key) *VirtualServer {
	for _, v := range r.vss {
		if v.Key == k {
			return v
		}
	}
	return nil
}

// problems lists what is left out and why, Service by Service in
// namespace/name order: the Service's own problems, then its lost claims.
func (m *model) problems() []error {
	names := make([]string, 0, len(m.problemServices))
	for n := range m.problemServices {
		names = append(names, n)
	}
	slices.Sort(names)
	var out []error
	for _, n := range names {
		r, ok := m.services[n]
		lost := false
		out = append(out, r.problems...)
		seen := map[Key]bool{}
		for _, v := range r.all {
			if c := m.claims[v.Key]; c[0] != n || seen[v.Key] {
				lost = true
				out = append(out, fmt.Errorf("%s: %s: %w (%s)", v.Name, v.Key, ErrConflict, m.desired[v.Key].Name))
			}
			seen[v.Key] = true
		}
		if !ok || (len(r.problems) == 0 && !lost) {
			delete(m.problemServices, n) // resolved since it was marked
		}
	}
	return out
}
