package sched

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"orch.dev/orch/sched/fit"
)

// oracle re-checks a plan without the plugins: it replays the bindings in
// order on a plain model of the cluster (pods per node) and checks each
// against sched/fit's predicates and naive, quadratic versions of the
// pod-to-pod constraints.
type oracle struct {
	nodes  map[string]*corev1.Node
	order  []string // node names, sorted
	placed map[string][]*corev1.Pod
	nsLbls map[string]map[string]string
}

func newOracle(c cluster) *oracle {
	o := &oracle{nodes: map[string]*corev1.Node{}, placed: map[string][]*corev1.Pod{}, nsLbls: map[string]map[string]string{}}
	for _, n := range c.nodes {
		o.nodes[n.Name] = n
		o.order = append(o.order, n.Name)
	}
	for _, ns := range c.namespaces {
		o.nsLbls[ns.Name] = ns.Labels
	}
	for _, p := range c.bound {
		if fit.Occupies(p) {
			o.placed[p.Spec.NodeName] = append(o.placed[p.Spec.NodeName], p)
		}
	}
	return o
}

// bind checks one binding and records it; it returns what is wrong.
func (o *oracle) bind(p *corev1.Pod, nodeName string) []string {
	n := o.nodes[nodeName]
	if n == nil {
		return []string{"bound to an unknown node"}
	}
	var bad []string
	if !fit.Ready(n) {
		bad = append(bad, "node not ready")
	}
	if fit.Cordoned(p, n) {
		bad = append(bad, "node cordoned")
	}
	if !fit.MatchesNodeSelector(p, n) {
		bad = append(bad, "node selector/affinity")
	}
	if taint, ok := fit.UntoleratedTaint(p, n); ok {
		bad = append(bad, "untolerated taint "+taint.Key)
	}
	if short := fit.Insufficient(fit.Requests(p), fit.Allocatable(n), fit.Used(o.placed[nodeName])); len(short) > 0 {
		bad = append(bad, fmt.Sprintf("overcommits %v", short))
	}
	if port, ok := fit.PortConflict(p, o.placed[nodeName]); ok {
		bad = append(bad, "host port "+port.String())
	}
	bad = append(bad, o.podConstraints(p, n)...)
	bound := p.DeepCopy()
	bound.Spec.NodeName = nodeName
	o.placed[nodeName] = append(o.placed[nodeName], bound)
	return bad
}

func (o *oracle) each(fn func(q *corev1.Pod, n *corev1.Node)) {
	for _, name := range o.order {
		for _, q := range o.placed[name] {
			fn(q, o.nodes[name])
		}
	}
}

// podConstraints checks required pod anti-affinity (the pod's, and every
// placed pod's against it), required pod affinity and hard zone spreading.
func (o *oracle) podConstraints(p *corev1.Pod, n *corev1.Node) []string {
	var bad []string
	sameDomain := func(key string, a, b *corev1.Node) bool {
		va, oka := a.Labels[key]
		vb, okb := b.Labels[key]
		return oka && okb && va == vb
	}
	o.each(func(q *corev1.Pod, qn *corev1.Node) {
		for _, term := range antiTerms(p) {
			if o.termMatches(term, p, q) && sameDomain(term.TopologyKey, n, qn) {
				bad = append(bad, fmt.Sprintf("its anti-affinity (%s) refuses %s/%s", term.TopologyKey, q.Namespace, q.Name))
			}
		}
		for _, term := range antiTerms(q) {
			if o.termMatches(term, q, p) && sameDomain(term.TopologyKey, n, qn) {
				bad = append(bad, fmt.Sprintf("the anti-affinity of %s/%s (%s) refuses it", q.Namespace, q.Name, term.TopologyKey))
			}
		}
	})
	if terms := affinityTerms(p); len(terms) > 0 {
		matchesAll := func(q *corev1.Pod) bool {
			for _, term := range terms {
				if !o.termMatches(term, p, q) {
					return false
				}
			}
			return true
		}
		// kube-scheduler's rule: the pod may be the first of its group if
		// no matching pod is on a node with one of the terms' keys.
		anywhere := false
		o.each(func(q *corev1.Pod, qn *corev1.Node) {
			for _, term := range terms {
				_, keyed := qn.Labels[term.TopologyKey]
				anywhere = anywhere || (keyed && matchesAll(q))
			}
		})
		for _, term := range terms {
			if _, ok := n.Labels[term.TopologyKey]; !ok {
				bad = append(bad, "affinity: node lacks "+term.TopologyKey)
				continue
			}
			near := false
			o.each(func(q *corev1.Pod, qn *corev1.Node) {
				near = near || (matchesAll(q) && sameDomain(term.TopologyKey, n, qn))
			})
			if !near && (anywhere || !matchesAll(p)) {
				bad = append(bad, "affinity: no matching pod in its "+term.TopologyKey)
			}
		}
	}
	for _, c := range p.Spec.TopologySpreadConstraints {
		if c.WhenUnsatisfiable == corev1.DoNotSchedule {
			bad = append(bad, o.spread(p, n, c)...)
		}
	}
	return bad
}

// spread checks a DoNotSchedule constraint: counting matching pods of the
// pod's namespace per domain over the nodes that have the key and match the
// pod's node selector/affinity, placing the pod may not put its domain more
// than maxSkew above the emptiest one.
func (o *oracle) spread(p *corev1.Pod, n *corev1.Node, c corev1.TopologySpreadConstraint) []string {
	v, ok := n.Labels[c.TopologyKey]
	if !ok {
		return []string{"spread: node lacks " + c.TopologyKey}
	}
	sel, _ := metav1.LabelSelectorAsSelector(c.LabelSelector)
	counts := map[string]int{}
	for _, name := range o.order {
		node := o.nodes[name]
		d, ok := node.Labels[c.TopologyKey]
		if !ok || !fit.MatchesNodeSelector(p, node) {
			continue
		}
		counts[d] += 0
		for _, q := range o.placed[name] {
			if q.Namespace == p.Namespace && q.DeletionTimestamp == nil && sel.Matches(labels.Set(q.Labels)) {
				counts[d]++
			}
		}
	}
	low := -1
	for _, k := range counts {
		if low < 0 || k < low {
			low = k
		}
	}
	self := 0
	if sel.Matches(labels.Set(p.Labels)) {
		self = 1
	}
	if skew := counts[v] + self - max(low, 0); skew > int(c.MaxSkew) {
		return []string{fmt.Sprintf("spread: skew %d in %s=%s > %d", skew, c.TopologyKey, v, c.MaxSkew)}
	}
	return nil
}

func antiTerms(p *corev1.Pod) []corev1.PodAffinityTerm {
	if a := p.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		return a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	return nil
}

func affinityTerms(p *corev1.Pod) []corev1.PodAffinityTerm {
	if a := p.Spec.Affinity; a != nil && a.PodAffinity != nil {
		return a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	}
	return nil
}

// termMatches: the term of owner selects other (namespace and labels).
func (o *oracle) termMatches(term corev1.PodAffinityTerm, owner, other *corev1.Pod) bool {
	inNS := len(term.Namespaces) == 0 && term.NamespaceSelector == nil && other.Namespace == owner.Namespace
	for _, ns := range term.Namespaces {
		inNS = inNS || ns == other.Namespace
	}
	if term.NamespaceSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
		inNS = inNS || (err == nil && s.Matches(labels.Set(o.nsLbls[other.Namespace])))
	}
	s, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
	return inNS && err == nil && term.LabelSelector != nil && s.Matches(labels.Set(other.Labels))
}

// checkAgainstOracle checks that a plan accounts for every pending pod
// once, that each binding is valid when it is made, and that every
// preemption names bound pods of lower priority whose removal makes room
// for the preemptors (resources and host ports).
func checkAgainstOracle(t tb, c cluster, plan Plan) {
	t.Helper()
	o := newOracle(c)
	pending := map[string]*corev1.Pod{}
	for _, p := range c.pending {
		pending[keyOf(p)] = p
	}
	seen := map[string]int{}
	for _, b := range plan.Bindings {
		key := b.Namespace + "/" + b.Name
		seen[key]++
		p := pending[key]
		if p == nil || string(p.UID) != b.UID {
			t.Fatalf("binding %+v is not for a pending pod", b)
		}
		if bad := o.bind(p, b.Node); len(bad) > 0 {
			t.Errorf("%s -> %s: %v", key, b.Node, bad)
		}
	}
	for _, u := range plan.Unschedulable {
		seen[u.Pod.Key]++
		if u.Message == "" || u.Events == 0 {
			t.Errorf("%s unschedulable without explanation (%q) or events (%b)", u.Pod.Key, u.Message, u.Events)
		}
	}
	for key := range pending {
		if seen[key] != 1 {
			t.Errorf("%s appears %d times in the plan", key, seen[key])
		}
	}
	checkPreemptions(t, o, plan)
}

func checkPreemptions(t tb, o *oracle, plan Plan) {
	t.Helper()
	victims := map[string]bool{}
	after := map[string][]*corev1.Pod{} // per node: placed pods minus victims plus preemptors
	for _, pr := range plan.Preemptions {
		for _, v := range pr.Victims {
			if victims[v.Key] {
				t.Errorf("%s is the victim of two preemptions", v.Key)
			}
			victims[v.Key] = true
			if v.Priority >= pr.Pod.Priority || v.Pod.Spec.NodeName != pr.Node || v.Pod.DeletionTimestamp != nil {
				t.Errorf("%s (priority %d) may not preempt %s (priority %d, on %q)", pr.Pod.Key, pr.Pod.Priority, v.Key, v.Priority, v.Pod.Spec.NodeName)
			}
		}
	}
	for _, pr := range plan.Preemptions {
		if _, ok := after[pr.Node]; !ok {
			for _, q := range o.placed[pr.Node] {
				if !victims[keyOf(q)] {
					after[pr.Node] = append(after[pr.Node], q)
				}
			}
		}
		p := pr.Pod.Pod.DeepCopy()
		p.Spec.NodeName = pr.Node
		n := o.nodes[pr.Node]
		if short := fit.Insufficient(fit.Requests(p), fit.Allocatable(n), fit.Used(after[pr.Node])); len(short) > 0 {
			t.Errorf("%s preempts %d pods on %s and still lacks %v", pr.Pod.Key, len(pr.Victims), pr.Node, short)
		}
		if port, bad := fit.PortConflict(p, after[pr.Node]); bad {
			t.Errorf("%s preempts on %s and still lacks host port %v", pr.Pod.Key, pr.Node, port)
		}
		after[pr.Node] = append(after[pr.Node], p)
	}
}

// tb is what the checks need of *testing.T and *rapid.T.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// planSummary is a plan as comparable text.
func planSummary(plan Plan) string {
	s := ""
	for _, b := range plan.Bindings {
		s += fmt.Sprintf("bind %s/%s %s\n", b.Namespace, b.Name, b.Node)
	}
	for _, u := range plan.Unschedulable {
		s += fmt.Sprintf("unschedulable %s %q %b\n", u.Pod.Key, u.Message, u.Events)
	}
	for _, pr := range plan.Preemptions {
		s += fmt.Sprintf("preempt %s on %s:", pr.Pod.Key, pr.Node)
		for _, v := range pr.Victims {
			s += " " + v.Key
		}
		s += "\n"
	}
	return s
}
