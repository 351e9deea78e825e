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

// drainKey names one endpoint of one virtual server.
type drainKey struct {
	vs Key
	ep netip.AddrPort
}

// withDraining keeps, at weight 0, the endpoints that applied has and desired
// no longer has (removed or not ready), until timeout has passed since each
// was first seen missing (since records that; the returned map replaces it).
// A virtual server removed entirely goes at once, as in kube-proxy. next is
// the earliest moment a drained endpoint is due to go (zero if none).
func withDraining(applied, desired RuleSet, since map[drainKey]time.Time, now time.Time, timeout time.Duration) (RuleSet, map[drainKey]time.Time, time.Time) {
	out := make(RuleSet, len(desired))
	nextSince := map[drainKey]time.Time{}
	var next time.Time
	for k, d := range desired {
		out[k] = d
		a, ok := applied[k]
		if !ok || timeout <= 0 {
			continue
		}
		var keep []Endpoint
		for _, e := range a.Endpoints {
			if _, still := d.Endpoint(e.Addr); still {
				continue
			}
			dk := drainKey{k, e.Addr}
			start, ok := since[dk]
			if !ok {
				start = now
			}
			due := start.Add(timeout)
			if !now.Before(due) {
				continue
			}
			nextSince[dk] = start
			if next.IsZero() || due.Before(next) {
				next = due
			}
			keep = append(keep, Endpoint{Addr: e.Addr, Weight: 0})
		}
		if len(keep) > 0 {
			c := d.Clone()
			c.Endpoints = SortEndpoints(append(c.Endpoints, keep...))
			out[k] = c
		}
	}
	return out, nextSince, next
}
