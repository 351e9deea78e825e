package fsm

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
	"orch.dev/orch/sched/fit"
)

// Errors of pod placement and eviction.
var (
	// ErrDoesNotFit means a binding no longer fits its node.
	ErrDoesNotFit = errors.New("does not fit")
	// ErrDisruption means an eviction would break a workload's
	// availability budget (HTTP 429, as Kubernetes answers).
	ErrDisruption = errors.New("disruption budget")
)

func (a *applier) bind(c *Bind) *Result {
	res := &Result{Batch: make([]*Result, len(c.Bindings))}
	for i, b := range c.Bindings {
		res.Batch[i] = a.bindOne(b, c.Time)
	}
	return res
}

// bindOne re-checks one binding against the current state and applies it.
func (a *applier) bindOne(b Binding, t int64) *Result {
	rec := a.get(api.Pod, ObjectKey(api.Pod, b.Namespace, b.Name))
	if rec == nil {
		return objErr(ErrNotFound, api.Pod, b.Namespace, b.Name, "pods %q not found", b.Name)
	}
	pod := rec.Obj.(*corev1.Pod)
	switch {
	case b.UID != "" && string(pod.UID) != b.UID:
		return objErr(ErrConflict, api.Pod, b.Namespace, b.Name, "pod %s/%s was replaced (uid %s, binding for %s)", b.Namespace, b.Name, pod.UID, b.UID)
	case pod.Spec.NodeName != "":
		return objErr(ErrConflict, api.Pod, b.Namespace, b.Name, "pod %s/%s is already bound to %s", b.Namespace, b.Name, pod.Spec.NodeName)
	case pod.DeletionTimestamp != nil:
		return objErr(ErrConflict, api.Pod, b.Namespace, b.Name, "pod %s/%s is being deleted", b.Namespace, b.Name)
	}
	n := a.get(api.Node, b.Node)
	if n == nil {
		return objErr(ErrDoesNotFit, api.Pod, b.Namespace, b.Name, "node %q not found", b.Node)
	}
	if reason := a.unfit(rec, n); reason != "" {
		return objErr(ErrDoesNotFit, api.Pod, b.Namespace, b.Name, "pod %s/%s does not fit on node %s: %s", b.Namespace, b.Name, b.Node, reason)
	}
	next := shallowCopy(pod).(*corev1.Pod)
	next.Spec.NodeName = b.Node
	next.Status.Conditions = slices.Clone(pod.Status.Conditions) // setPodCondition writes into it
	setPodCondition(&next.Status, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue,
		LastTransitionTime: metav1.NewTime(time.Unix(0, t).UTC())})
	next.ResourceVersion = formatRV(a.index)
	out := newRecord(api.Pod, next, a.index)
	out.sameSpec(rec)
	a.put(out, rec) // counts the pod in its node's usage
	return &Result{Record: out}
}

// unfit explains why the pod of rec may not go to the node of n now, ""
// when it fits.
func (a *applier) unfit(rec, n *Record) string {
	pod, node := rec.Obj.(*corev1.Pod), n.Obj.(*corev1.Node)
	switch {
	case !fit.Ready(node):
		return "node is not ready"
	case fit.Cordoned(pod, node):
		return "node is unschedulable"
	case !fit.MatchesNodeSelector(pod, node):
		return "node does not match the pod's node selector or affinity"
	}
	if t, ok := fit.UntoleratedTaint(pod, node); ok {
		return fmt.Sprintf("untolerated taint %s=%s:%s", t.Key, t.Value, t.Effect)
	}
	if short := fit.Insufficient(rec.resources(), n.resources(), a.usage[node.Name]); len(short) > 0 {
		names := make([]string, len(short))
		for i, n := range short {
			names[i] = "insufficient " + string(n)
		}
		return strings.Join(names, ", ")
	}
	if len(fit.HostPorts(pod)) > 0 {
		var onNode []*corev1.Pod
		for _, p := range a.collect(api.Pod.Resource, indexNode, node.Name) {
			onNode = append(onNode, p.Obj.(*corev1.Pod))
		}
		if p, ok := fit.PortConflict(pod, onNode); ok {
			return "host port " + p.String() + " is in use"
		}
	}
	return ""
}

func setPodCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status == c.Status {
				c.LastTransitionTime = st.Conditions[i].LastTransitionTime
			}
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// podGrace is the grace period a pod deletion gets.
func podGrace(pod *corev1.Pod, requested *int64) int64 {
	if requested != nil {
		return max(*requested, 0)
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		return max(*g, 0)
	}
	return corev1.DefaultTerminationGracePeriodSeconds
}

// terminateGracefully marks a bound, running pod for deletion instead of
// removing it: its node stops the containers within the grace period and
// then confirms with a zero-grace delete. It returns nil when the pod can
// go at once (unbound, finished, or grace 0).
func (a *applier) terminateGracefully(rec *Record, requested *int64, deletionTime int64) *Result {
	pod := rec.Obj.(*corev1.Pod)
	grace := podGrace(pod, requested)
	if grace == 0 || !fit.Occupies(pod) {
		return nil
	}
	if pod.DeletionGracePeriodSeconds != nil && *pod.DeletionGracePeriodSeconds <= grace {
		return &Result{Record: rec} // already terminating, at least as soon
	}
	next := shallowCopy(pod).(*corev1.Pod)
	ts := metav1.NewTime(time.Unix(0, deletionTime).Add(time.Duration(grace) * time.Second).UTC())
	next.DeletionTimestamp = &ts
	next.DeletionGracePeriodSeconds = &grace
	next.ResourceVersion = formatRV(a.index)
	out := newRecord(api.Pod, next, a.index)
	out.sameSpec(rec)
	a.put(out, rec)
	return &Result{Record: out}
}

func (a *applier) evict(c *Evict) *Result {
	rec := a.get(api.Pod, ObjectKey(api.Pod, c.Namespace, c.Name))
	if rec == nil {
		return objErr(ErrNotFound, api.Pod, c.Namespace, c.Name, "pods %q not found", c.Name)
	}
	pod := rec.Obj.(*corev1.Pod)
	if c.UID != "" && string(pod.UID) != c.UID {
		return objErr(ErrConflict, api.Pod, c.Namespace, c.Name, "pod %s/%s was replaced", c.Namespace, c.Name)
	}
	if pod.DeletionTimestamp != nil {
		return &Result{Record: rec}
	}
	if msg := a.disruptionBlocked(pod); msg != "" {
		return objErr(ErrDisruption, api.Pod, c.Namespace, c.Name, "Cannot evict pod %s/%s: %s", c.Namespace, c.Name, msg)
	}
	if res := a.terminateGracefully(rec, c.Grace, c.DeletionTime); res != nil {
		return res
	}
	return &Result{Record: a.removeTree(rec), Deleted: true}
}

// disruptionBlocked applies the budget a Deployment's rolling-update
// maxUnavailable implies: evicting an available pod may not leave fewer
// than replicas - maxUnavailable available pods. Other pods are not
// budgeted (as in Kubernetes without a PodDisruptionBudget).
func (a *applier) disruptionBlocked(pod *corev1.Pod) string {
	if !podAvailable(pod) {
		return ""
	}
	rsRef := metav1.GetControllerOf(pod)
	if rsRef == nil || rsRef.Kind != "ReplicaSet" {
		return ""
	}
	rs := a.get(api.ReplicaSet, ObjectKey(api.ReplicaSet, pod.Namespace, rsRef.Name))
	if rs == nil {
		return ""
	}
	depRef := metav1.GetControllerOf(rs.Obj)
	if depRef == nil || depRef.Kind != "Deployment" {
		return ""
	}
	drec := a.get(api.Deployment, ObjectKey(api.Deployment, pod.Namespace, depRef.Name))
	if drec == nil {
		return ""
	}
	dep := drec.Obj.(*appsv1.Deployment)
	ru := dep.Spec.Strategy.RollingUpdate
	if dep.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable == nil {
		return ""
	}
	desired := int32(1)
	if dep.Spec.Replicas != nil {
		desired = *dep.Spec.Replicas
	}
	maxUnavailable, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, int(desired), false)
	if err != nil {
		return ""
	}
	available := 0
	for _, r := range a.collect(api.ReplicaSet.Resource, indexOwner, string(dep.UID)) {
		for _, p := range a.collect(api.Pod.Resource, indexOwner, string(r.Obj.GetUID())) {
			if podAvailable(p.Obj.(*corev1.Pod)) {
				available++
			}
		}
	}
	if available-1 < int(desired)-maxUnavailable {
		return fmt.Sprintf("deployment %s needs %d of its %d replicas available (maxUnavailable %d) and has %d",
			dep.Name, int(desired)-maxUnavailable, desired, maxUnavailable, available)
	}
	return ""
}

// podAvailable: bound, not terminating, and Ready.
func podAvailable(pod *corev1.Pod) bool {
	if pod.Spec.NodeName == "" || pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
