package sched

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/sched/fit"
)

// node builds a Ready node.
func node(name string, cpu, mem string, pods int64, lbls map[string]string, taints ...corev1.Taint) *corev1.Node {
	alloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		corev1.ResourcePods: *resource.NewQuantity(pods, resource.DecimalSI)}
	l := map[string]string{corev1.LabelHostname: name}
	for k, v := range lbls {
		l[k] = v
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}, Spec: corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{Allocatable: alloc, Capacity: alloc,
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
}

// pod builds a pod requesting cpu and memory ("" for none).
func pod(ns, name, cpu, mem string, prio int32) *corev1.Pod {
	req := corev1.ResourceList{}
	if cpu != "" {
		req[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		req[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec: corev1.PodSpec{Priority: &prio, Containers: []corev1.Container{{Name: "c", Image: "i",
			Resources: corev1.ResourceRequirements{Requests: req}}}}}
	return p
}

func bindTo(p *corev1.Pod, n string) *corev1.Pod { p.Spec.NodeName = n; return p }

// finalPods is every pod of the snapshot with spec.nodeName set to where
// it is accounted (assumed pods included), per node.
func finalPods(snap *Snapshot) map[string][]*corev1.Pod {
	out := map[string][]*corev1.Pod{}
	for name, n := range snap.nodes {
		for _, p := range n.Pods {
			c := p.Pod.DeepCopy()
			c.Spec.NodeName = name
			out[name] = append(out[name], c)
		}
	}
	return out
}

// checkPlan verifies, independently of the plugins, with sched/fit and a
// naive anti-affinity check on the final state, that no node a binding
// went to is overcommitted and that every binding satisfies the pod's node
// selector and affinity, taints, readiness, host ports and required
// anti-affinity (both ways).
func checkPlan(t testing.TB, snap *Snapshot, plan Plan) {
	t.Helper()
	pods := finalPods(snap)
	for _, b := range plan.Bindings {
		key := b.Namespace + "/" + b.Name
		n := snap.Node(b.Node)
		if n == nil || n.Node == nil {
			t.Fatalf("%s bound to unknown node %s", key, b.Node)
		}
		var p *corev1.Pod
		var others []*corev1.Pod
		for _, q := range pods[b.Node] {
			if q.Namespace+"/"+q.Name == key {
				p = q
			} else {
				others = append(others, q)
			}
		}
		if p == nil {
			t.Fatalf("%s bound to %s but not accounted there", key, b.Node)
		}
		used := fit.Used(pods[b.Node])
		alloc := fit.Allocatable(n.Node)
		for r, v := range used {
			if v > alloc[r] {
				t.Errorf("node %s overcommitted on %s: %d > %d", b.Node, r, v, alloc[r])
			}
		}
		if !fit.Ready(n.Node) || fit.Cordoned(p, n.Node) {
			t.Errorf("%s bound to not ready or cordoned node %s", key, b.Node)
		}
		if !fit.MatchesNodeSelector(p, n.Node) {
			t.Errorf("%s bound to %s against its node selector/affinity", key, b.Node)
		}
		if taint, bad := fit.UntoleratedTaint(p, n.Node); bad {
			t.Errorf("%s bound to %s with untolerated taint %v", key, b.Node, taint)
		}
		if port, bad := fit.PortConflict(p, others); bad {
			t.Errorf("%s bound to %s with host port %v taken", key, b.Node, port)
		}
	}
	checkAntiAffinity(t, snap, pods)
}

// checkAntiAffinity checks every pair of placed pods against each other's
// required anti-affinity terms.
func checkAntiAffinity(t testing.TB, snap *Snapshot, pods map[string][]*corev1.Pod) {
	t.Helper()
	type placed struct {
		pod  *corev1.Pod
		node *corev1.Node
	}
	var all []placed
	for name, ps := range pods {
		n := snap.Node(name)
		if n == nil || n.Node == nil {
			continue
		}
		for _, p := range ps {
			all = append(all, placed{p, n.Node})
		}
	}
	for _, a := range all {
		if a.pod.Spec.Affinity == nil || a.pod.Spec.Affinity.PodAntiAffinity == nil {
			continue
		}
		for _, term := range a.pod.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
			if err != nil || term.LabelSelector == nil {
				continue
			}
			av, ok := a.node.Labels[term.TopologyKey]
			if !ok {
				continue
			}
			for _, b := range all {
				if b.pod == a.pod || !termNamespace(term, a.pod, b.pod, snap) || !sel.Matches(labels.Set(b.pod.Labels)) {
					continue
				}
				if bv, ok := b.node.Labels[term.TopologyKey]; ok && bv == av {
					t.Errorf("anti-affinity of %s/%s broken by %s/%s (%s=%s)", a.pod.Namespace, a.pod.Name, b.pod.Namespace, b.pod.Name, term.TopologyKey, av)
				}
			}
		}
	}
}

func termNamespace(term corev1.PodAffinityTerm, owner, other *corev1.Pod, snap *Snapshot) bool {
	if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
		return other.Namespace == owner.Namespace
	}
	for _, ns := range term.Namespaces {
		if ns == other.Namespace {
			return true
		}
	}
	if term.NamespaceSelector != nil {
		sel, err := metav1.LabelSelectorAsSelector(term.NamespaceSelector)
		return err == nil && sel.Matches(labels.Set(snap.NamespaceLabels(other.Namespace)))
	}
	return false
}

func podInfos(pods ...*corev1.Pod) []*PodInfo {
	out := make([]*PodInfo, len(pods))
	for i, p := range pods {
		out[i] = NewPodInfo(p)
	}
	return out
}

func keyOf(p *corev1.Pod) string { return fmt.Sprintf("%s/%s", p.Namespace, p.Name) }
