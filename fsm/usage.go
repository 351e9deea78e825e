package fsm

import (
	"github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/sched/fit"
)

// usage is, per node, what the pods bound to it take: the sum of
// fit.Requests over the pods that occupy it (fit.Occupies). It is derived
// from the pods, as an index is, and kept up to date by every pod write
// (put, remove), so that re-checking a binding costs the same on a node
// with a hundred pods as on an empty one (Kubernetes' NodeInfo.Requested,
// kept by the state machine instead of a scheduler's cache).
//
// Only the apply goroutine uses it, so it is a plain map changed in
// place, reflecting the last applied entry; Restore rebuilds it, and
// snapshots leave it out. A node without occupying pods has no entry, and
// entries hold no zero values, so that the incremental map always equals
// one summed from scratch.
type usage map[string]fit.Resources

// add adds sign times req to node's usage.
func (u usage) add(node string, req fit.Resources, sign int64) {
	used := u[node]
	if used == nil {
		used = make(fit.Resources, len(req))
		u[node] = used
	}
	for k, v := range req {
		if used[k] += sign * v; used[k] == 0 {
			delete(used, k)
		}
	}
	if len(used) == 0 {
		delete(u, node)
	}
}

// occupied is the node a pod record takes resources on, "" for none.
func occupied(r *Record) string {
	if r == nil {
		return ""
	}
	if p := r.Obj.(*corev1.Pod); fit.Occupies(p) {
		return p.Spec.NodeName
	}
	return ""
}

// podChanged moves a pod's requests between nodes when a write changes
// where it counts: bound, finished, deleted (next nil) or, in a write that
// the API refuses but the log may hold, resized.
func (u usage) podChanged(prev, next *Record) {
	from, to := occupied(prev), occupied(next)
	if from == "" && to == "" {
		return
	}
	var out, in fit.Resources
	if from != "" {
		out = prev.resources()
	}
	if to != "" {
		in = next.resources()
	}
	if from == to && equalResources(out, in) {
		return // a status or metadata change of a running pod
	}
	if from != "" {
		u.add(from, out, -1)
	}
	if to != "" {
		u.add(to, in, 1)
	}
}

func equalResources(a, b fit.Resources) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// usageOf sums, from scratch, the requests of every occupying pod per node.
func usageOf(txn *memdb.Txn) usage {
	u := usage{}
	it, err := txn.Get(api.Pod.Resource, indexID)
	if err != nil {
		panic(err) // static schema: cannot fail
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*Record)
		if node := occupied(r); node != "" {
			u.add(node, r.resources(), 1)
		}
	}
	return u
}
