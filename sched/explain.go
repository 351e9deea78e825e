package sched

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// errNoNodes is kube-scheduler's message for a cluster without nodes.
const errNoNodes = "no nodes available to schedule pods"

// reasonCounts counts, per reason, the nodes a filter rejected for it.
type reasonCounts map[string]int

func (r reasonCounts) add(st *Status) {
	for _, reason := range st.Reasons {
		r[reason]++
	}
}

// explain is kube-scheduler's FitError message: "0/5 nodes are available:
// 3 Insufficient memory, 2 node(s) had untolerated taint {gpu: true}.",
// reasons by count (highest first), then alphabetically.
func explain(nodes int, r reasonCounts) string {
	if nodes == 0 {
		return errNoNodes
	}
	type rc struct {
		reason string
		n      int
	}
	list := make([]rc, 0, len(r))
	for reason, n := range r {
		list = append(list, rc{reason, n})
	}
	slices.SortFunc(list, func(a, b rc) int {
		return cmp.Or(cmp.Compare(b.n, a.n), strings.Compare(a.reason, b.reason))
	})
	parts := make([]string, len(list))
	for i, x := range list {
		parts[i] = fmt.Sprintf("%d %s", x.n, x.reason)
	}
	return fmt.Sprintf("0/%d nodes are available: %s.", nodes, strings.Join(parts, ", "))
}
