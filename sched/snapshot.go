package sched

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Snapshot is the scheduler's picture of the cluster: every node with the
// pods on it, namespace labels (for affinity namespaceSelectors) and the
// indexes spreading needs. Schedule adds the pods it places (assumes them),
// so a Snapshot is also the scheduler's running account; the leader loop
// keeps one up to date from the FSM's history.
//
// It is not safe for concurrent use.
type Snapshot struct {
	nodes      map[string]*NodeInfo
	list       []*NodeInfo // candidates (Node set) in scan order
	dirty      bool        // list needs rebuilding
	namespaces map[string]map[string]string
	// Zones and controllers are numbered (from 1) so that the per-node
	// spreading counts are small integers.
	zoneIDs    map[string]int32
	ownerIDs   map[types.UID]int32
	zoneOwners map[zoneOwner]int32
	// preferNoSchedule counts nodes with PreferNoSchedule taints.
	preferNoSchedule int
	// antiAffinityPods counts pods with required anti-affinity terms.
	antiAffinityPods int
	// affinityPods counts pods with any pod (anti-)affinity term.
	affinityPods int
	// nextStart is where the next pod's node scan starts, so that sampled
	// scans rotate over the whole cluster.
	nextStart int
	// placeholders are the preemptors holding a place during a Schedule
	// call (see Placeholder).
	placeholders map[string]bool
}

type zoneOwner struct{ zone, owner int32 }

// NewSnapshot builds a snapshot. Pods that are not bound, or have finished,
// are left out.
func NewSnapshot(nodes []*corev1.Node, pods []*corev1.Pod, namespaces []*corev1.Namespace) *Snapshot {
	s := &Snapshot{nodes: map[string]*NodeInfo{}, namespaces: map[string]map[string]string{}, zoneOwners: map[zoneOwner]int32{},
		zoneIDs: map[string]int32{}, ownerIDs: map[types.UID]int32{}, placeholders: map[string]bool{}}
	for _, n := range nodes {
		s.SetNode(n)
	}
	for _, ns := range namespaces {
		s.SetNamespace(ns.Name, ns.Labels)
	}
	for _, p := range pods {
		if occupies(p) {
			s.AddPod(NewPodInfo(p), p.Spec.NodeName)
		}
	}
	return s
}

// occupies reports whether a pod takes a place on its node: bound and not
// finished (sched/fit.Occupies).
func occupies(p *corev1.Pod) bool {
	return p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func (s *Snapshot) info(name string) *NodeInfo {
	n := s.nodes[name]
	if n == nil {
		n = newNodeInfo(name)
		s.nodes[name] = n
	}
	return n
}

// SetNode adds or updates a node.
func (s *Snapshot) SetNode(node *corev1.Node) {
	n := s.info(node.Name)
	oldZone, had := n.Zone, n.Node != nil
	s.countZone(n, -1)
	n.setNode(node)
	n.zoneID = s.zoneID(n.Zone)
	s.countZone(n, 1)
	if !had || oldZone != n.Zone {
		s.dirty = true
	}
}

func (s *Snapshot) zoneID(zone string) int32 {
	if zone == "" {
		return 0
	}
	id, ok := s.zoneIDs[zone]
	if !ok {
		id = int32(len(s.zoneIDs) + 1)
		s.zoneIDs[zone] = id
	}
	return id
}

// ownerID numbers a controller (0 for none); create adds unknown ones.
func (s *Snapshot) ownerID(uid types.UID, create bool) int32 {
	if uid == "" {
		return 0
	}
	id, ok := s.ownerIDs[uid]
	if !ok && create {
		id = int32(len(s.ownerIDs) + 1)
		s.ownerIDs[uid] = id
	}
	return id
}

// RemoveNode removes a node; its pods stay accounted until they go.
func (s *Snapshot) RemoveNode(name string) {
	n := s.nodes[name]
	if n == nil || n.Node == nil {
		return
	}
	s.countZone(n, -1)
	n.setNode(nil)
	n.Zone, n.zoneID = "", 0
	s.dirty = true
	s.forgetIfEmpty(n)
}

func (s *Snapshot) forgetIfEmpty(n *NodeInfo) {
	if n.Node == nil && len(n.Pods) == 0 {
		delete(s.nodes, n.Name)
	}
}

// countZone adds sign times the node's pods to its zone's owner counts,
// and the node to the count of nodes with PreferNoSchedule taints.
func (s *Snapshot) countZone(n *NodeInfo, sign int32) {
	if n.preferNoSchedule {
		s.preferNoSchedule += int(sign)
	}
	if n.zoneID == 0 {
		return
	}
	for _, c := range n.owners {
		k := zoneOwner{n.zoneID, c.id}
		if s.zoneOwners[k] += sign * c.n; s.zoneOwners[k] == 0 {
			delete(s.zoneOwners, k)
		}
	}
}

// SetNamespace records a namespace's labels.
func (s *Snapshot) SetNamespace(name string, labels map[string]string) {
	s.namespaces[name] = labels
}

// RemoveNamespace forgets a namespace.
func (s *Snapshot) RemoveNamespace(name string) { delete(s.namespaces, name) }

// NamespaceLabels are a namespace's labels.
func (s *Snapshot) NamespaceLabels(name string) map[string]string { return s.namespaces[name] }

// AddPod accounts p on node.
func (s *Snapshot) AddPod(p *PodInfo, node string) {
	n := s.info(node)
	owner := s.ownerID(p.Owner, true)
	n.addPod(p, owner)
	if owner != 0 && n.zoneID != 0 {
		s.zoneOwners[zoneOwner{n.zoneID, owner}]++
	}
	if len(p.RequiredAntiAffinity) > 0 {
		s.antiAffinityPods++
	}
	if hasPodAffinity(p) {
		s.affinityPods++
	}
}

// RemovePod removes the pod with key from node's account and returns it.
func (s *Snapshot) RemovePod(key, node string) *PodInfo {
	n := s.nodes[node]
	if n == nil {
		return nil
	}
	i := slices.IndexFunc(n.Pods, func(p *PodInfo) bool { return p.Key == key })
	if i < 0 {
		return nil
	}
	owner := s.ownerID(n.Pods[i].Owner, false)
	p := n.removePod(key, owner)
	if owner != 0 && n.zoneID != 0 {
		k := zoneOwner{n.zoneID, owner}
		if s.zoneOwners[k]--; s.zoneOwners[k] <= 0 {
			delete(s.zoneOwners, k)
		}
	}
	if len(p.RequiredAntiAffinity) > 0 {
		s.antiAffinityPods--
	}
	if hasPodAffinity(p) {
		s.affinityPods--
	}
	s.forgetIfEmpty(n)
	return p
}

func hasPodAffinity(p *PodInfo) bool {
	return len(p.RequiredAffinity)+len(p.RequiredAntiAffinity)+len(p.PreferredAffinity)+len(p.PreferredAntiAffinity) > 0
}

// Placeholder reports whether the pod with key only holds a place for a
// preemptor until its victims are gone. It takes room like any pod (so
// counts against resources, ports and anti-affinity), but it is not there:
// constraints that need a pod to be somewhere (required affinity, the
// emptiest domain of a spread constraint) must hold without it, as
// kube-scheduler checks filters with and without nominated pods.
func (s *Snapshot) Placeholder(key string) bool { return s.placeholders[key] }

// Node returns the NodeInfo of a node, or nil.
func (s *Snapshot) Node(name string) *NodeInfo { return s.nodes[name] }

// Nodes are the candidate nodes in scan order: zones interleaved (so that a
// sampled scan sees every zone), names sorted within a zone.
func (s *Snapshot) Nodes() []*NodeInfo {
	if !s.dirty && s.list != nil {
		return s.list
	}
	byZone := map[string][]*NodeInfo{}
	var zones []string
	for _, n := range s.nodes {
		if n.Node == nil {
			continue
		}
		if _, ok := byZone[n.Zone]; !ok {
			zones = append(zones, n.Zone)
		}
		byZone[n.Zone] = append(byZone[n.Zone], n)
	}
	slices.Sort(zones)
	s.list = s.list[:0]
	for _, z := range zones {
		slices.SortFunc(byZone[z], func(a, b *NodeInfo) int { return strings.Compare(a.Name, b.Name) })
	}
	for i := 0; ; i++ {
		added := false
		for _, z := range zones {
			if i < len(byZone[z]) {
				s.list = append(s.list, byZone[z][i])
				added = true
			}
		}
		if !added {
			break
		}
	}
	s.dirty = false
	if s.nextStart >= len(s.list) {
		s.nextStart = 0
	}
	return s.list
}

// zoneOwnerCount is how many pods of a controller the zone holds.
func (s *Snapshot) zoneOwnerCount(zone, owner int32) int32 {
	return s.zoneOwners[zoneOwner{zone, owner}]
}

// eachPod calls fn for every pod on every node (candidate or not) until it
// returns false.
func (s *Snapshot) eachPod(fn func(p *PodInfo, n *NodeInfo) bool) {
	for _, n := range s.nodes {
		for _, p := range n.Pods {
			if !fn(p, n) {
				return
			}
		}
	}
}
