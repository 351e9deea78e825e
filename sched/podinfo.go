package sched

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"

	"orch.dev/orch/sched/fit"
)

// Requests kube-scheduler assumes, for scoring only, of a pod that sets none,
// so that best-effort pods still spread (in sched/fit's milli-units).
const (
	defaultMilliCPURequest = 100
	defaultMemoryRequest   = 200 * 1024 * 1024 * 1000
)

// PodInfo is a pod with everything the plugins need parsed once: its
// requests, host ports, controller, affinity terms and spread constraints.
// It is immutable once built; a changed pod gets a new PodInfo.
type PodInfo struct {
	Pod      *corev1.Pod
	Key      string // namespace/name
	Priority int32
	Requests Resource
	// NonZeroCPU and NonZeroMemory are the requests scores count.
	NonZeroCPU, NonZeroMemory int64
	Ports                     []fit.HostPort
	Owner                     types.UID // the controller's uid, "" when none

	RequiredAffinity      []AffinityTerm
	RequiredAntiAffinity  []AffinityTerm
	PreferredAffinity     []WeightedTerm
	PreferredAntiAffinity []WeightedTerm
	Spread                []SpreadConstraint

	nodeAffinity      nodeaffinity.RequiredNodeAffinity
	hasNodeAffinity   bool // a nodeSelector or required node affinity
	preferredAffinity *nodeaffinity.PreferredSchedulingTerms
}

// AffinityTerm is a parsed PodAffinityTerm: pods matching selector in the
// term's namespaces, counted per value of topologyKey on their nodes.
type AffinityTerm struct {
	Selector    labels.Selector
	Namespaces  map[string]bool
	NsSelector  labels.Selector // nil when the term has no namespaceSelector
	TopologyKey string
}

// WeightedTerm is a preferred affinity term.
type WeightedTerm struct {
	AffinityTerm
	Weight int64
}

// SpreadConstraint is a parsed topologySpreadConstraint.
type SpreadConstraint struct {
	MaxSkew       int32
	TopologyKey   string
	Selector      labels.Selector
	MinDomains    int32
	Hard          bool // DoNotSchedule
	HonorAffinity bool // only nodes matching the pod's node affinity count
	HonorTaints   bool // only nodes whose taints the pod tolerates count
}

// NewPodInfo parses pod. Malformed selectors (which validation refuses)
// match nothing.
func NewPodInfo(pod *corev1.Pod) *PodInfo {
	p := &PodInfo{Pod: pod, Key: pod.Namespace + "/" + pod.Name, Ports: fit.HostPorts(pod)}
	if pod.Spec.Priority != nil {
		p.Priority = *pod.Spec.Priority
	}
	p.Requests = newResource(fit.Requests(pod))
	p.NonZeroCPU, p.NonZeroMemory = p.Requests.MilliCPU, p.Requests.Memory
	if p.NonZeroCPU == 0 {
		p.NonZeroCPU = defaultMilliCPURequest
	}
	if p.NonZeroMemory == 0 {
		p.NonZeroMemory = defaultMemoryRequest
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		p.Owner = ref.UID
	}
	if a := pod.Spec.Affinity; a != nil {
		if pa := a.PodAffinity; pa != nil {
			for _, t := range pa.RequiredDuringSchedulingIgnoredDuringExecution {
				p.RequiredAffinity = append(p.RequiredAffinity, newAffinityTerm(pod, t))
			}
			for _, t := range pa.PreferredDuringSchedulingIgnoredDuringExecution {
				p.PreferredAffinity = append(p.PreferredAffinity, WeightedTerm{newAffinityTerm(pod, t.PodAffinityTerm), int64(t.Weight)})
			}
		}
		if pa := a.PodAntiAffinity; pa != nil {
			for _, t := range pa.RequiredDuringSchedulingIgnoredDuringExecution {
				p.RequiredAntiAffinity = append(p.RequiredAntiAffinity, newAffinityTerm(pod, t))
			}
			for _, t := range pa.PreferredDuringSchedulingIgnoredDuringExecution {
				p.PreferredAntiAffinity = append(p.PreferredAntiAffinity, WeightedTerm{newAffinityTerm(pod, t.PodAffinityTerm), int64(t.Weight)})
			}
		}
		if na := a.NodeAffinity; na != nil && len(na.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
			if terms, err := nodeaffinity.NewPreferredSchedulingTerms(na.PreferredDuringSchedulingIgnoredDuringExecution); err == nil {
				p.preferredAffinity = terms
			}
		}
	}
	p.hasNodeAffinity = len(pod.Spec.NodeSelector) > 0 ||
		(pod.Spec.Affinity != nil && pod.Spec.Affinity.NodeAffinity != nil && pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil)
	if p.hasNodeAffinity {
		p.nodeAffinity = nodeaffinity.GetRequiredNodeAffinity(pod)
	}
	for _, c := range pod.Spec.TopologySpreadConstraints {
		sc := SpreadConstraint{MaxSkew: c.MaxSkew, TopologyKey: c.TopologyKey, Hard: c.WhenUnsatisfiable == corev1.DoNotSchedule,
			Selector:      withLabelKeys(pod, c.LabelSelector, c.MatchLabelKeys, nil),
			HonorAffinity: c.NodeAffinityPolicy == nil || *c.NodeAffinityPolicy == corev1.NodeInclusionPolicyHonor,
			HonorTaints:   c.NodeTaintsPolicy != nil && *c.NodeTaintsPolicy == corev1.NodeInclusionPolicyHonor}
		if c.MinDomains != nil {
			sc.MinDomains = *c.MinDomains
		}
		p.Spread = append(p.Spread, sc)
	}
	return p
}

// MatchesNodeAffinity reports whether the pod's nodeSelector and required
// node affinity accept node (sched/fit.MatchesNodeSelector, parsed once).
func (p *PodInfo) MatchesNodeAffinity(node *corev1.Node) bool {
	if !p.hasNodeAffinity {
		return true
	}
	ok, err := p.nodeAffinity.Match(node)
	return ok && err == nil
}

// HasRequiredPodAffinity reports whether the pod has required pod
// (anti-)affinity terms.
func (p *PodInfo) HasRequiredPodAffinity() bool {
	return len(p.RequiredAffinity) > 0 || len(p.RequiredAntiAffinity) > 0
}

func newAffinityTerm(pod *corev1.Pod, t corev1.PodAffinityTerm) AffinityTerm {
	at := AffinityTerm{TopologyKey: t.TopologyKey, Namespaces: map[string]bool{},
		Selector: withLabelKeys(pod, t.LabelSelector, t.MatchLabelKeys, t.MismatchLabelKeys)}
	for _, ns := range t.Namespaces {
		at.Namespaces[ns] = true
	}
	if t.NamespaceSelector != nil {
		if s, err := metav1.LabelSelectorAsSelector(t.NamespaceSelector); err == nil {
			at.NsSelector = s
		} else {
			at.NsSelector = labels.Nothing()
		}
	} else if len(t.Namespaces) == 0 {
		at.Namespaces[pod.Namespace] = true
	}
	return at
}

// withLabelKeys parses a selector (nil matches nothing) and adds the
// matchLabelKeys (key in the pod's value) and mismatchLabelKeys (key not in
// it) requirements.
func withLabelKeys(pod *corev1.Pod, ls *metav1.LabelSelector, match, mismatch []string) labels.Selector {
	if ls == nil {
		return labels.Nothing()
	}
	s, err := metav1.LabelSelectorAsSelector(ls)
	if err != nil {
		return labels.Nothing()
	}
	add := func(keys []string, op selection.Operator) {
		for _, k := range keys {
			v, ok := pod.Labels[k]
			if !ok {
				continue
			}
			if r, err := labels.NewRequirement(k, op, []string{v}); err == nil {
				s = s.Add(*r)
			}
		}
	}
	add(match, selection.In)
	add(mismatch, selection.NotIn)
	return s
}

// Matches reports whether an existing pod is selected by the term.
func (t *AffinityTerm) Matches(p *PodInfo, snap *Snapshot) bool {
	ns := p.Pod.Namespace
	if !t.Namespaces[ns] && (t.NsSelector == nil || !t.NsSelector.Matches(labels.Set(snap.NamespaceLabels(ns)))) {
		return false
	}
	return t.Selector.Matches(labels.Set(p.Pod.Labels))
}
