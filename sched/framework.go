package sched

// MaxNodeScore is the score a Score plugin gives its favourite node after
// normalisation.
const MaxNodeScore = 100

// Status is a filter's verdict on one node; nil means the node passes.
type Status struct {
	// Reasons are the explanations counted in an unschedulable pod's
	// message, one per reason ("Insufficient cpu").
	Reasons []string
	// Unresolvable means removing pods from the node cannot help, so
	// preemption does not consider it (a taint, a label mismatch...).
	Unresolvable bool
	// Plugin names the filter that rejected the node.
	Plugin string
}

func unschedulable(plugin string, reasons ...string) *Status {
	return &Status{Reasons: reasons, Plugin: plugin}
}

func unresolvable(plugin string, reasons ...string) *Status {
	return &Status{Reasons: reasons, Plugin: plugin, Unresolvable: true}
}

// Plugin is a named scheduling step.
type Plugin interface {
	Name() string
}

// FilterPlugin rejects nodes a pod cannot run on. A plugin instance serves
// one Schedule call and one pod at a time: PreFilter prepares for the pod
// (and reports whether Filter has anything to check for it, so that
// irrelevant plugins cost nothing per node), then Filter runs per node.
type FilterPlugin interface {
	Plugin
	PreFilter(pod *PodInfo, snap *Snapshot) (relevant bool)
	Filter(pod *PodInfo, node *NodeInfo) *Status
}

// ScorePlugin ranks the nodes that passed every filter. PreScore prepares
// for the pod and the feasible nodes (false: the plugin would score them
// all alike); Score gives each a raw score and Normalize maps the raw
// scores to [0, MaxNodeScore] in place.
type ScorePlugin interface {
	Plugin
	PreScore(pod *PodInfo, snap *Snapshot, nodes []*NodeInfo) (relevant bool)
	Score(pod *PodInfo, node *NodeInfo) int64
	Normalize(scores []int64)
}

// EventMask is a set of cluster changes; a pod a filter rejected waits
// for one of the changes that filter declares could make it fit.
type EventMask uint32

// The cluster changes the queue reacts to.
const (
	NodeAdded EventMask = 1 << iota
	NodeReadyChanged
	NodeSchedulableChanged
	NodeAllocatableChanged
	NodeLabelsChanged
	NodeTaintsChanged
	// AssignedPodAdded: a pod was bound (or assumed) to a node.
	AssignedPodAdded
	// AssignedPodRemoved: a pod left a node: deleted, finished, or an
	// assumed binding was refused.
	AssignedPodRemoved
	AssignedPodLabelsChanged
	NamespaceLabelsChanged

	AllEvents EventMask = 1<<iota - 1
)

// Evented is implemented by filters that say which changes can make a pod
// they rejected fit; filters that do not are woken by every change.
type Evented interface {
	Events() EventMask
}

type weighted struct {
	ScorePlugin
	weight int64
}

// Framework is the set of plugins one Schedule call uses.
type Framework struct {
	filters []FilterPlugin
	scores  []weighted
}

// NewFramework returns the default plugins, filters in kube-scheduler's
// order (a rejected node is explained by the first filter that rejects it),
// scores with kube-scheduler's default weights.
func NewFramework() *Framework {
	return &Framework{
		filters: []FilterPlugin{
			&NodeReadyUnschedulable{},
			&TaintToleration{},
			&NodeAffinity{},
			&NodePorts{},
			&NodeResourcesFit{},
			&PodTopologySpread{},
			&InterPodAffinity{},
		},
		scores: []weighted{
			{&TaintToleration{}, 3},
			{&NodeAffinity{}, 2},
			{&LeastAllocated{}, 1},
			{&BalancedAllocation{}, 1},
			{&InterPodAffinity{}, 2},
			{&PodTopologySpread{}, 2},
			{&DefaultSpread{}, 2},
		},
	}
}

// eventsFor is the union of the events that can help a pod the named
// filters rejected.
func (f *Framework) eventsFor(plugins map[string]bool) EventMask {
	var m EventMask
	for _, p := range f.filters {
		if !plugins[p.Name()] {
			continue
		}
		if e, ok := p.(Evented); ok {
			m |= e.Events()
		} else {
			m |= AllEvents
		}
	}
	return m
}
