package fsm

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/sched/fit"
)

// tableUsage holds, per node, what the pods bound to it take: the sum of
// fit.Requests over the pods that occupy it (fit.Occupies). It is derived
// from the pods table, as the indexes are: every pod write updates it in
// the same transaction, a restore rebuilds it, and snapshots leave it out.
// With it, the re-check of a binding costs the same on a node with 100
// pods as on an empty one (Kubernetes' NodeInfo.Requested, kept in the
// state instead of in a scheduler's cache).
const tableUsage = "usage"

// usageRow is one node's usage. Rows are immutable once inserted; a node
// without occupying pods has none. Used never holds zero entries, so that
// an incremental row equals one summed from scratch.
type usageRow struct {
	Node string
	Used fit.Resources
}

func usageTable() *memdb.TableSchema {
	return &memdb.TableSchema{Name: tableUsage, Indexes: map[string]*memdb.IndexSchema{
		indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Node"}},
	}}
}

// nodeUsed is what the pods occupying node take (nil when none do).
func nodeUsed(txn *memdb.Txn, node string) fit.Resources {
	raw, err := txn.First(tableUsage, indexID, node)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(*usageRow).Used
}

// addUsage adds sign times req to node's row.
func addUsage(txn *memdb.Txn, node string, req fit.Resources, sign int64) {
	old := nodeUsed(txn, node)
	used := make(fit.Resources, max(len(old), len(req)))
	for k, v := range old {
		used[k] = v
	}
	for k, v := range req {
		if used[k] += sign * v; used[k] == 0 {
			delete(used, k)
		}
	}
	var err error
	if len(used) == 0 {
		_, err = txn.DeleteAll(tableUsage, indexID, node)
	} else {
		err = txn.Insert(tableUsage, &usageRow{Node: node, Used: used})
	}
	if err != nil {
		panic(fmt.Sprintf("usage of node %s: %v", node, err)) // static schema: cannot fail
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

// podChanged moves a pod's requests between node usages when a write
// changes where it counts: bound, finished, deleted (next nil) or, in a
// write that the API would refuse but the log may still hold, resized.
func podChanged(txn *memdb.Txn, prev, next *Record) {
	from, to := occupied(prev), occupied(next)
	if from == "" && to == "" {
		return
	}
	var out, in fit.Resources
	if from != "" {
		out = prev.requests()
	}
	if to != "" {
		in = next.requests()
	}
	if from == to && equalResources(out, in) {
		return // a status or metadata change of a running pod
	}
	if from != "" {
		addUsage(txn, from, out, -1)
	}
	if to != "" {
		addUsage(txn, to, in, 1)
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

// rebuildUsage computes every node's usage from the pods (after a
// restore).
func rebuildUsage(txn *memdb.Txn) error {
	if _, err := txn.DeleteAll(tableUsage, indexID); err != nil {
		return err
	}
	sums := recomputeUsage(txn)
	for node, used := range sums {
		if err := txn.Insert(tableUsage, &usageRow{Node: node, Used: used}); err != nil {
			return err
		}
	}
	return nil
}

// recomputeUsage sums the requests of every occupying pod per node, from
// scratch (zero entries left out, as in the rows).
func recomputeUsage(txn *memdb.Txn) map[string]fit.Resources {
	sums := map[string]fit.Resources{}
	it, err := txn.Get(api.Pod.Resource, indexID)
	if err != nil {
		panic(err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		r := raw.(*Record)
		node := occupied(r)
		if node == "" {
			continue
		}
		if sums[node] == nil {
			sums[node] = fit.Resources{}
		}
		sums[node].Add(r.requests())
	}
	for node, used := range sums {
		for k, v := range used {
			if v == 0 {
				delete(used, k)
			}
		}
		if len(used) == 0 {
			delete(sums, node)
		}
	}
	return sums
}
