package proxy

import (
	"net/netip"
	"time"
)

// Op is what a Change does to a virtual server.
type Op int

const (
	Add Op = iota + 1
	Update
	Remove
)

func (o Op) String() string {
	switch o {
	case Add:
		return "add"
	case Update:
		return "update"
	case Remove:
		return "remove"
	}
	return "?"
}

// Change is one virtual server to add, update or remove. Old is nil for Add,
// New is nil for Remove.
type Change struct {
	Op       Op
	Key      Key
	Old, New *VirtualServer
}

// Diff lists what turns old into new, in key order. Virtual servers that are
// Equal in both produce nothing: a sync that changes one endpoint touches
// one virtual server.
func Diff(old, new RuleSet) []Change {
	var out []Change
	for _, k := range new.Keys() {
		n := new[k]
		o, ok := old[k]
		switch {
		case !ok:
			out = append(out, Change{Op: Add, Key: k, New: n})
		case !o.Equal(n):
			out = append(out, Change{Op: Update, Key: k, Old: o, New: n})
		}
	}
	for _, k := range old.Keys() {
		if _, ok := new[k]; !ok {
			out = append(out, Change{Op: Remove, Key: k, Old: old[k]})
		}
	}
	return out
}

// EndpointDiff splits an update into endpoints to add, to remove, and
// present in both with another weight (returned with the new weight).
func EndpointDiff(old, new *VirtualServer) (added, removed, reweighted []Endpoint) {
	var oe, ne []Endpoint
	if old != nil {
		oe = old.Endpoints
	}
	if new != nil {
		ne = new.Endpoints
	}
	i, j := 0, 0
	for i < len(oe) || j < len(ne) {
		switch {
		case j == len(ne) || (i < len(oe) && oe[i].Addr.Compare(ne[j].Addr) < 0):
			removed = append(removed, oe[i])
			i++
		case i == len(oe) || oe[i].Addr.Compare(ne[j].Addr) > 0:
			added = append(added, ne[j])
			j++
		default:
			if oe[i].Weight != ne[j].Weight {
				reweighted = append(reweighted, ne[j])
			}
			i++
			j++
		}
	}
	return added, removed, reweighted
}

// drains remembers since when each endpoint that left a virtual server
// has been draining (kept at weight 0 so existing connections finish and no
// new one goes to it), so that it goes once timeout has passed.
type drains struct {
	timeout time.Duration // <= 0: no draining
	since   map[Key]map[netip.AddrPort]time.Time
}

func newDrains(timeout time.Duration) *drains {
	return &drains{timeout: timeout, since: map[Key]map[netip.AddrPort]time.Time{}}
}

// apply returns the virtual server to program for key k: desired (nil: the
// virtual server goes, at once, as in kube-proxy) plus, at weight 0, the
// endpoints applied has and desired no longer has (removed or not ready)
// whose drain is not yet due. desired is not modified.
func (dr *drains) apply(k Key, applied, desired *VirtualServer, now time.Time) *VirtualServer {
	was := dr.since[k]
	delete(dr.since, k)
	if applied == nil || desired == nil || dr.timeout <= 0 {
		return desired
	}
	var keep []Endpoint
	for _, e := range applied.Endpoints {
		if _, still := desired.Endpoint(e.Addr); still {
			continue
		}
		start, ok := was[e.Addr]
		if !ok {
			start = now
		}
		if !now.Before(start.Add(dr.timeout)) {
			continue
		}
		if dr.since[k] == nil {
			dr.since[k] = map[netip.AddrPort]time.Time{}
		}
		dr.since[k][e.Addr] = start
		keep = append(keep, Endpoint{Addr: e.Addr, Weight: 0})
	}
	if len(keep) == 0 {
		return desired
	}
	c := desired.Clone()
	c.Endpoints = SortEndpoints(append(c.Endpoints, keep...))
	return c
}

// keys are the virtual servers with draining endpoints.
func (dr *drains) keys() []Key {
	ks := make([]Key, 0, len(dr.since))
	for k := range dr.since {
		ks = append(ks, k)
	}
	return ks
}

// next is the earliest moment a draining endpoint is due to go (zero if
// none).
func (dr *drains) next() time.Time {
	var next time.Time
	for _, m := range dr.since {
		for _, start := range m {
			if due := start.Add(dr.timeout); next.IsZero() || due.Before(next) {
				next = due
			}
		}
	}
	return next
}
