// Package fit holds the placement predicates that both the scheduler and
// the FSM use: whether a pod's requests fit what a node has left, whether
// it matches the node's labels and tolerates its taints, and whether its
// host ports are free. The FSM re-checks every binding with them when it
// applies it, so they must be deterministic; the Kubernetes semantics come
// from k8s.io/component-helpers, whose version is therefore part of the log
// compatibility contract (see DEVELOPERS.md).
package fit

import (
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// Resources are quantities in milli-units (millicores, milli-bytes...),
// keyed by resource name; "pods" counts pods.
type Resources map[corev1.ResourceName]int64

// Add adds r2 to r.
func (r Resources) Add(r2 Resources) {
	for k, v := range r2 {
		r[k] += v
	}
}

// Sub subtracts r2 from r.
func (r Resources) Sub(r2 Resources) {
	for k, v := range r2 {
		r[k] -= v
	}
}

func fromList(l corev1.ResourceList) Resources {
	out := make(Resources, len(l)+1)
	for k, q := range l {
		out[k] = q.MilliValue()
	}
	return out
}

// Requests is what a pod takes from a node, as Kubernetes counts it (the
// larger of its containers' sum and any init container, per resource,
// plus overhead), and one pod.
func Requests(pod *corev1.Pod) Resources {
	r := fromList(resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{}))
	r[corev1.ResourcePods] = 1000
	return r
}

// Allocatable is what a node offers to pods.
func Allocatable(node *corev1.Node) Resources {
	if len(node.Status.Allocatable) > 0 {
		return fromList(node.Status.Allocatable)
	}
	return fromList(node.Status.Capacity)
}

// Occupies reports whether pod holds resources on its node: it is bound and
// has not finished.
func Occupies(pod *corev1.Pod) bool {
	return pod.Spec.NodeName != "" && pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// Used sums the requests of the pods that occupy a node.
func Used(pods []*corev1.Pod) Resources {
	used := Resources{}
	for _, p := range pods {
		if Occupies(p) {
			used.Add(Requests(p))
		}
	}
	return used
}

// Insufficient lists, sorted, the resources a request needs more of than
// the node has left; a resource the node does not offer at all has 0.
func Insufficient(req, allocatable, used Resources) []corev1.ResourceName {
	var out []corev1.ResourceName
	for name, want := range req {
		if want == 0 {
			continue
		}
		if allocatable[name]-used[name] < want {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// MatchesNodeSelector reports whether the pod's nodeSelector and required
// node affinity accept the node.
func MatchesNodeSelector(pod *corev1.Pod, node *corev1.Node) bool {
	ok, err := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)
	return ok && err == nil
}

// scheduling taint effects: what a pod must tolerate to be placed.
var schedulingEffects = func(t *corev1.Taint) bool {
	return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
}

// UntoleratedTaint returns a NoSchedule or NoExecute taint of the node the
// pod does not tolerate.
func UntoleratedTaint(pod *corev1.Pod, node *corev1.Node) (*corev1.Taint, bool) {
	t, found := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, pod.Spec.Tolerations, schedulingEffects, false)
	if !found {
		return nil, false
	}
	return &t, true
}

// Tolerates reports whether pod tolerates taint.
func Tolerates(pod *corev1.Pod, taint *corev1.Taint) bool {
	return corev1helpers.TolerationsTolerateTaint(klog.Background(), pod.Spec.Tolerations, taint, false)
}

// UnschedulableTaint is the taint a cordoned node behaves as if it had.
var UnschedulableTaint = corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}

// Cordoned reports whether the node is cordoned for this pod (daemon pods
// tolerate it).
func Cordoned(pod *corev1.Pod, node *corev1.Node) bool {
	return node.Spec.Unschedulable && !Tolerates(pod, &UnschedulableTaint)
}

// HostPort identifies a port a pod binds on its node.
type HostPort struct {
	IP       string
	Protocol corev1.Protocol
	Port     int32
}

func (h HostPort) String() string { return fmt.Sprintf("%s/%d", h.Protocol, h.Port) }

// HostPorts lists the host ports a pod asks for. An unset IP means every
// address (0.0.0.0) and an unset protocol TCP, as Kubernetes defaults them.
func HostPorts(pod *corev1.Pod) []HostPort {
	var out []HostPort
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.HostPort > 0 {
				ip, proto := p.HostIP, p.Protocol
				if ip == "" {
					ip = "0.0.0.0"
				}
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				out = append(out, HostPort{IP: ip, Protocol: proto, Port: p.HostPort})
			}
		}
	}
	return out
}

// PortConflict returns a host port the pod wants that an occupying pod on
// the node already holds.
func PortConflict(pod *corev1.Pod, onNode []*corev1.Pod) (HostPort, bool) {
	want := HostPorts(pod)
	if len(want) == 0 {
		return HostPort{}, false
	}
	for _, other := range onNode {
		if !Occupies(other) {
			continue
		}
		for _, h := range HostPorts(other) {
			for _, w := range want {
				if h.Port == w.Port && h.Protocol == w.Protocol && (h.IP == w.IP || h.IP == "0.0.0.0" || w.IP == "0.0.0.0") {
					return w, true
				}
			}
		}
	}
	return HostPort{}, false
}

// Ready reports whether the node's Ready condition is True.
func Ready(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
