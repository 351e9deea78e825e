package cli

import (
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	resourcehelper "k8s.io/component-helpers/resource"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// related is what a description shows besides the object itself.
type related struct {
	events    []*corev1.Event
	eventsErr error
	// pods are a node's pods (describe node).
	pods    []*corev1.Pod
	podsErr error
	// replicaSets are the ReplicaSets a deployment controls.
	replicaSets []*appsv1.ReplicaSet
	rsErr       error
}

// related reads what describing obj needs besides obj.
func (e *env) related(cl *client.Client, k *api.Kind, obj api.Object) related {
	var r related
	r.events, r.eventsErr = objectEvents(e, cl, k, obj)
	switch o := obj.(type) {
	case *corev1.Node:
		list, err := cl.ListAll(e.ctx, api.Pod, "", client.ListOptions{FieldSelector: "spec.nodeName=" + o.Name})
		r.podsErr = err
		if err == nil {
			for _, p := range list.Items {
				r.pods = append(r.pods, p.(*corev1.Pod))
			}
		}
	case *appsv1.Deployment:
		r.replicaSets, r.rsErr = ownedReplicaSets(e.ctx, cl, o)
	}
	return r
}

// describePodPriority writes a pod's Priority lines (after Namespace, as
// kubectl does).
func describePodPriority(d *describer, pod *corev1.Pod) {
	if pod.Spec.Priority != nil {
		d.line(0, "Priority:\t%d", *pod.Spec.Priority)
	}
	if pod.Spec.PriorityClassName != "" {
		d.line(0, "Priority Class Name:\t%s", pod.Spec.PriorityClassName)
	}
}

// describePodScheduling explains why a pod is not placed: the scheduler's
// PodScheduled=False condition ("0/5 nodes are available: ..."), and the
// node a preemption nominated for it.
func describePodScheduling(d *describer, pod *corev1.Pod) {
	for _, c := range pod.Status.Conditions {
		if c.Type != corev1.PodScheduled || c.Status != corev1.ConditionFalse {
			continue
		}
		msg := oneLine(c.Message)
		switch {
		case c.Reason != "" && msg != "":
			msg = c.Reason + ": " + msg
		case msg == "":
			msg = orDefault(c.Reason, "not scheduled")
		}
		d.line(0, "Scheduling:\t%s", msg)
	}
	if n := pod.Status.NominatedNodeName; n != "" {
		d.line(0, "NominatedNodeName:\t%s", n)
	}
}

// describeNodePods writes kubectl's "Non-terminated Pods" and "Allocated
// resources" sections: each pod's requests and limits, and their sums, as
// shares of the node's allocatable resources.
func describeNodePods(d *describer, n *corev1.Node) {
	if d.rel.podsErr != nil {
		d.line(0, "Non-terminated Pods:\t<unable to list pods: %s>", oneLine(d.rel.podsErr.Error()))
		return
	}
	alloc := n.Status.Allocatable
	if len(alloc) == 0 {
		alloc = n.Status.Capacity
	}
	var pods []*corev1.Pod
	for _, p := range d.rel.pods {
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			pods = append(pods, p)
		}
	}
	sort.Slice(pods, func(i, j int) bool { return podKey(pods[i]) < podKey(pods[j]) })
	d.line(0, "Non-terminated Pods:\t(%d in total)", len(pods))
	d.line(1, "Namespace\tName\t\tCPU Requests\tCPU Limits\tMemory Requests\tMemory Limits\tAge")
	d.line(1, "---------\t----\t\t------------\t----------\t---------------\t-------------\t---")
	reqs, limits := corev1.ResourceList{}, corev1.ResourceList{}
	for _, p := range pods {
		req := resourcehelper.PodRequests(p, resourcehelper.PodResourcesOptions{})
		lim := resourcehelper.PodLimits(p, resourcehelper.PodResourcesOptions{})
		addResources(reqs, req)
		addResources(limits, lim)
		d.line(1, "%s\t%s\t\t%s\t%s\t%s\t%s\t%s", p.Namespace, p.Name,
			share(req, alloc, corev1.ResourceCPU), share(lim, alloc, corev1.ResourceCPU),
			share(req, alloc, corev1.ResourceMemory), share(lim, alloc, corev1.ResourceMemory), age(p.CreationTimestamp, d.now))
	}
	d.line(0, "Allocated resources:")
	d.line(0, "  (Total limits may be over 100 percent, i.e., overcommitted.)")
	d.line(1, "Resource\tRequests\tLimits")
	d.line(1, "--------\t--------\t------")
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		d.line(1, "%s\t%s\t%s", r, share(reqs, alloc, r), share(limits, alloc, r))
	}
}

func addResources(sum, add corev1.ResourceList) {
	for name, q := range add {
		cur := sum[name]
		cur.Add(q)
		sum[name] = cur
	}
}

// share is "250m (6%)": a quantity and its share of the allocatable amount
// (CPU compared in millicores, the rest in units, as kubectl does).
func share(l, alloc corev1.ResourceList, name corev1.ResourceName) string {
	q, total := l[name], alloc[name]
	pct := int64(0)
	if name == corev1.ResourceCPU {
		if total.MilliValue() != 0 {
			pct = int64(float64(q.MilliValue()) / float64(total.MilliValue()) * 100)
		}
	} else if total.Value() != 0 {
		pct = int64(float64(q.Value()) / float64(total.Value()) * 100)
	}
	return fmt.Sprintf("%s (%d%%)", q.String(), pct)
}

// describeDeploymentReplicaSets writes kubectl's OldReplicaSets and
// NewReplicaSet lines: the new one runs the deployment's current template,
// the old ones (still scaled up) an earlier one.
func describeDeploymentReplicaSets(d *describer, dep *appsv1.Deployment) {
	if d.rel.rsErr != nil {
		d.line(0, "OldReplicaSets:\t<unable to list replica sets: %s>", oneLine(d.rel.rsErr.Error()))
		return
	}
	newRS, old := splitReplicaSets(dep, d.rel.replicaSets)
	d.line(0, "OldReplicaSets:\t%s", formatReplicaSets(old))
	var cur []*appsv1.ReplicaSet
	if newRS != nil {
		cur = append(cur, newRS)
	}
	d.line(0, "NewReplicaSet:\t%s", formatReplicaSets(cur))
}

// splitReplicaSets finds the ReplicaSet whose template is the deployment's
// (the oldest such, as the controller does) and the old ones that still
// want pods.
func splitReplicaSets(dep *appsv1.Deployment, rses []*appsv1.ReplicaSet) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet) {
	sorted := append([]*appsv1.ReplicaSet(nil), rses...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i].CreationTimestamp, sorted[j].CreationTimestamp
		if !a.Equal(&b) {
			return a.Before(&b)
		}
		return sorted[i].Name < sorted[j].Name
	})
	var newRS *appsv1.ReplicaSet
	var old []*appsv1.ReplicaSet
	for _, rs := range sorted {
		switch {
		case newRS == nil && equalIgnoreHash(&rs.Spec.Template, &dep.Spec.Template):
			newRS = rs
		case replicas(rs.Spec.Replicas) != 0:
			old = append(old, rs)
		}
	}
	return newRS, old
}

func formatReplicaSets(rses []*appsv1.ReplicaSet) string {
	var parts []string
	for _, rs := range rses {
		parts = append(parts, fmt.Sprintf("%s (%d/%d replicas created)", rs.Name, rs.Status.Replicas, replicas(rs.Spec.Replicas)))
	}
	return orNone(strings.Join(parts, ", "))
}
