package sched

import (
	"maps"
	"reflect"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/sched/fit"
)

// cache is the leader loop's model of the cluster, kept from the FSM's
// history: the Snapshot that Schedule places pods into, the Queue of
// pending pods, and where each pod is counted. A pod whose binding has been
// proposed but not yet seen applied is "assumed": counted on its node
// exactly like a bound pod, so that the next plan cannot overcommit it.
type cache struct {
	snap  *Snapshot
	queue *Queue
	pods  map[string]*podState
	// changes accumulates the cluster changes since the queue last heard.
	changes EventMask
}

type podState struct {
	info    *PodInfo
	node    string // the node whose account holds it, "" when none
	assumed bool
}

func newCache(view *fsm.View) *cache {
	c := &cache{snap: NewSnapshot(nil, nil, nil), queue: NewQueue(), pods: map[string]*podState{}}
	view.List(api.Namespace, "", func(r *fsm.Record) bool {
		c.snap.SetNamespace(r.Obj.GetName(), r.Obj.GetLabels())
		return true
	})
	view.List(api.Node, "", func(r *fsm.Record) bool {
		c.snap.SetNode(r.Obj.(*corev1.Node))
		return true
	})
	view.List(api.Pod, "", func(r *fsm.Record) bool {
		c.pod(r.Obj.(*corev1.Pod), nil)
		return true
	})
	c.changes = 0
	return c
}

// apply updates the cache with one change from the history.
func (c *cache) apply(e fsm.Event) {
	switch e.Record.Kind {
	case api.Pod:
		pod := e.Record.Obj.(*corev1.Pod)
		if e.Type == fsm.Deleted {
			c.deletePod(pod.Namespace + "/" + pod.Name)
			return
		}
		var prev *corev1.Pod
		if e.Prev != nil {
			prev = e.Prev.Obj.(*corev1.Pod)
		}
		c.pod(pod, prev)
	case api.Node:
		node := e.Record.Obj.(*corev1.Node)
		switch e.Type {
		case fsm.Deleted:
			c.snap.RemoveNode(node.Name)
		case fsm.Added:
			c.snap.SetNode(node)
			c.changes |= NodeAdded
		default:
			old := c.snap.Node(node.Name)
			if old == nil || old.Node == nil {
				c.changes |= NodeAdded
			} else {
				c.changes |= nodeChanges(old.Node, node)
			}
			c.snap.SetNode(node)
		}
	case api.Namespace:
		if e.Type == fsm.Deleted {
			c.snap.RemoveNamespace(e.Record.Obj.GetName())
			return
		}
		if !maps.Equal(c.snap.NamespaceLabels(e.Record.Obj.GetName()), e.Record.Obj.GetLabels()) {
			c.changes |= NamespaceLabelsChanged
		}
		c.snap.SetNamespace(e.Record.Obj.GetName(), e.Record.Obj.GetLabels())
	}
}

// nodeChanges classifies a node update.
func nodeChanges(old, node *corev1.Node) EventMask {
	var m EventMask
	if fit.Ready(old) != fit.Ready(node) {
		m |= NodeReadyChanged
	}
	if !maps.Equal(fit.Allocatable(old), fit.Allocatable(node)) {
		m |= NodeAllocatableChanged
	}
	if old.Spec.Unschedulable != node.Spec.Unschedulable {
		m |= NodeSchedulableChanged
	}
	if !maps.Equal(old.Labels, node.Labels) {
		m |= NodeLabelsChanged
	}
	if !reflect.DeepEqual(old.Spec.Taints, node.Spec.Taints) {
		m |= NodeTaintsChanged
	}
	return m
}

// pending reports whether this scheduler should place the pod.
func pending(pod *corev1.Pod) bool {
	return pod.Spec.NodeName == "" && pod.DeletionTimestamp == nil &&
		(pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == corev1.DefaultSchedulerName)
}

// pod records a pod's new state.
func (c *cache) pod(pod, prev *corev1.Pod) {
	key := pod.Namespace + "/" + pod.Name
	st := c.pods[key]
	if st != nil && st.info.Pod.UID != pod.UID {
		c.deletePod(key) // replaced under the same name
		st = nil
	}
	changed := st == nil || st.info.Pod.Generation != pod.Generation || !maps.Equal(st.info.Pod.Labels, pod.Labels)
	var info *PodInfo
	if changed {
		info = NewPodInfo(pod)
	} else {
		// Status-only change: the parsed spec still holds.
		cp := *st.info
		cp.Pod = pod
		info = &cp
	}
	if st == nil {
		st = &podState{}
		c.pods[key] = st
	}
	labelsChanged := prev != nil && !maps.Equal(prev.Labels, pod.Labels)
	st.info = info
	switch {
	case occupies(pod):
		if st.node == pod.Spec.NodeName {
			c.snap.RemovePod(key, st.node)
			c.snap.AddPod(info, st.node)
			if labelsChanged {
				c.changes |= AssignedPodLabelsChanged
			}
		} else {
			c.unplace(key, st)
			c.snap.AddPod(info, pod.Spec.NodeName)
			st.node = pod.Spec.NodeName
			c.changes |= AssignedPodAdded
		}
		st.assumed = false
		c.queue.Done(key)
	case pod.Spec.NodeName != "": // finished
		c.unplace(key, st)
		c.queue.Delete(key)
	case st.assumed:
		// Its binding is in flight: keep it counted, with fresh labels.
		c.snap.RemovePod(key, st.node)
		c.snap.AddPod(info, st.node)
	case pending(pod):
		c.queue.Add(info, changed)
	default:
		c.unplace(key, st)
		c.queue.Delete(key)
	}
}

// unplace takes a pod out of its node's account.
func (c *cache) unplace(key string, st *podState) {
	if st.node != "" {
		c.snap.RemovePod(key, st.node)
		c.changes |= AssignedPodRemoved
	}
	st.node, st.assumed = "", false
}

func (c *cache) deletePod(key string) {
	if st := c.pods[key]; st != nil {
		c.unplace(key, st)
		delete(c.pods, key)
	}
	c.queue.Delete(key)
}

// assume records that Schedule placed a pod (Schedule has already added it
// to the snapshot).
func (c *cache) assume(key, node string) {
	if st := c.pods[key]; st != nil {
		st.node, st.assumed = node, true
	}
}

// current reports whether the cache holds the pod with this key and uid.
func (c *cache) current(key, uid string) bool {
	st := c.pods[key]
	return st != nil && string(st.info.Pod.UID) == uid
}

// forget undoes an assumption whose binding was refused, unless the pod has
// meanwhile been seen bound. It reports whether the pod is still pending
// and should be retried.
func (c *cache) forget(key, node string) bool {
	st := c.pods[key]
	if st == nil {
		return false
	}
	if st.assumed && st.node == node {
		c.unplace(key, st)
	}
	return st.node == "" && pending(st.info.Pod)
}

// takeChanges returns and clears the accumulated changes.
func (c *cache) takeChanges() EventMask {
	m := c.changes
	c.changes = 0
	return m
}
