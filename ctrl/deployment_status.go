package ctrl

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

// Condition reasons of Deployments (Kubernetes' deploymentutil).
const (
	reasonNewRSCreated         = "NewReplicaSetCreated"
	reasonFoundNewRS           = "FoundNewReplicaSet"
	reasonRSUpdated            = "ReplicaSetUpdated"
	reasonNewRSAvailable       = "NewReplicaSetAvailable"
	reasonTimedOut             = "ProgressDeadlineExceeded"
	reasonPaused               = "DeploymentPaused"
	reasonResumed              = "DeploymentResumed"
	reasonMinimumAvailable     = "MinimumReplicasAvailable"
	reasonMinimumUnavailable   = "MinimumReplicasUnavailable"
	reasonReplicaSetFailure    = "ReplicaSetCreateError"
	messageMinimumAvailable    = "Deployment has minimum availability."
	messageMinimumNotAvailable = "Deployment does not have minimum availability."
)

// syncStatus writes the Deployment's status computed from the latest
// view, if it changed. It writes nothing when the spec changed since the
// reconcile read it: observedGeneration must only claim what was acted
// on, and the change has queued another reconcile.
func (d *deployments) syncStatus(ctx context.Context, key string, seen *appsv1.Deployment, created, reused string) error {
	ns, name := splitKey(key)
	v := d.c.View()
	rec := v.Get(api.Deployment, ns, name)
	if rec == nil || rec.Obj.GetUID() != seen.UID || rec.Obj.GetGeneration() != seen.Generation {
		return nil
	}
	dep := rec.Obj.(*appsv1.Deployment)
	s := observe(v, dep)
	s.created, s.reused = created, reused
	st := d.computeStatus(s)
	if apiequality.Semantic.DeepEqual(dep.Status, st) {
		return nil
	}
	up := dep.DeepCopy()
	up.Status = st
	_, err := d.c.Update(ctx, up, true)
	return err
}

func (d *deployments) computeStatus(s *rollout) appsv1.DeploymentStatus {
	dep := s.d
	now := metav1.NewTime(s.now.Truncate(time.Second))
	st := appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, CollisionCount: dep.Status.CollisionCount}
	var terminating, totalSpec int32
	for _, rs := range s.all() {
		totalSpec += s.spec(rs)
		for _, p := range s.pods[rs.UID] {
			if p.DeletionTimestamp != nil {
				terminating++
			}
			if !podActive(p) {
				continue
			}
			st.Replicas++
			if rs == s.newRS {
				st.UpdatedReplicas++
			}
			if podReady(p) {
				st.ReadyReplicas++
			}
			if podAvailable(p, dep.Spec.MinReadySeconds, s.now) {
				st.AvailableReplicas++
			}
		}
	}
	st.TerminatingReplicas = &terminating
	st.UnavailableReplicas = max(totalSpec-st.AvailableReplicas, 0)
	st.Conditions = append([]appsv1.DeploymentCondition(nil), dep.Status.Conditions...)

	if st.AvailableReplicas >= s.replicas()-maxUnavailable(dep) {
		setCondition(&st, appsv1.DeploymentAvailable, corev1.ConditionTrue, reasonMinimumAvailable, messageMinimumAvailable, now)
	} else {
		setCondition(&st, appsv1.DeploymentAvailable, corev1.ConditionFalse, reasonMinimumUnavailable, messageMinimumNotAvailable, now)
	}
	d.replicaFailure(&st, s, now)
	d.progressing(&st, s, now)
	return st
}

// replicaFailure mirrors the new ReplicaSet's ReplicaFailure condition.
func (d *deployments) replicaFailure(st *appsv1.DeploymentStatus, s *rollout, now metav1.Time) {
	if s.newRS != nil {
		for _, c := range s.newRS.Status.Conditions {
			if c.Type == appsv1.ReplicaSetReplicaFailure && c.Status == corev1.ConditionTrue {
				setCondition(st, appsv1.DeploymentReplicaFailure, corev1.ConditionTrue, reasonReplicaSetFailure, c.Message, now)
				return
			}
		}
	}
	removeCondition(st, appsv1.DeploymentReplicaFailure)
}

// progressing maintains the Progressing condition as Kubernetes'
// syncRolloutStatus does, and schedules a reconcile for the moment the
// progress deadline would pass.
func (d *deployments) progressing(st *appsv1.DeploymentStatus, s *rollout, now metav1.Time) {
	dep := s.d
	cur := condition(dep.Status.Conditions, appsv1.DeploymentProgressing)
	paused := cur != nil && cur.Reason == reasonPaused
	switch {
	case dep.Spec.Paused:
		if !paused {
			setCondition(st, appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonPaused, "Deployment is paused", now)
		}
		return
	case paused:
		setCondition(st, appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonResumed, "Deployment is resumed", now)
	}
	deadline := dep.Spec.ProgressDeadlineSeconds
	if deadline == nil || *deadline == math.MaxInt32 {
		removeCondition(st, appsv1.DeploymentProgressing)
		return
	}
	rsName := ""
	if s.newRS != nil {
		rsName = s.newRS.Name
	}
	started := s.created != "" || s.reused != ""
	switch {
	case s.created != "":
		refreshProgress(st, reasonNewRSCreated, fmt.Sprintf("Created new replica set %q", s.created), now)
	case s.reused != "":
		refreshProgress(st, reasonFoundNewRS, fmt.Sprintf("Found new replica set %q", s.reused), now)
	case s.newRS != nil && aboutAnotherReplicaSet(condition(st.Conditions, appsv1.DeploymentProgressing), rsName):
		// The status write of the reconcile that started this rollout
		// was lost (a leader change, a conflict): the condition still
		// speaks of the previous rollout, and would either never time
		// out (NewReplicaSetAvailable) or count from its old time.
		refreshProgress(st, reasonFoundNewRS, fmt.Sprintf("Found new replica set %q", rsName), now)
		started = true
	case condition(st.Conditions, appsv1.DeploymentProgressing) == nil && s.newRS != nil:
		setCondition(st, appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonFoundNewRS, fmt.Sprintf("Found new replica set %q", rsName), now)
	}
	if cur != nil && cur.Reason == reasonNewRSAvailable && st.Replicas == st.UpdatedReplicas && !started {
		return // a finished rollout; nothing to estimate until the next one
	}
	replicas := s.replicas()
	switch {
	case st.UpdatedReplicas == replicas && st.Replicas == replicas && st.AvailableReplicas == replicas && s.newRS != nil:
		setCondition(st, appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewRSAvailable,
			fmt.Sprintf("ReplicaSet %q has successfully progressed.", rsName), now)
		return
	case madeProgress(dep.Status, *st):
		refreshProgress(st, reasonRSUpdated, fmt.Sprintf("ReplicaSet %q is progressing.", rsName), now)
	}
	c := condition(st.Conditions, appsv1.DeploymentProgressing)
	if c == nil || c.Reason == reasonNewRSAvailable || c.Reason == reasonTimedOut {
		return
	}
	due := c.LastUpdateTime.Add(time.Duration(*deadline) * time.Second)
	if due.Before(s.now) {
		setCondition(st, appsv1.DeploymentProgressing, corev1.ConditionFalse, reasonTimedOut,
			fmt.Sprintf("ReplicaSet %q has timed out progressing.", rsName), now)
		d.rec.event(api.Deployment, dep, corev1.EventTypeWarning, deploymentComponent, reasonTimedOut,
			"Deployment %q has timed out progressing.", dep.Name)
		return
	}
	d.q.AddAfter(nsKey(dep.Namespace, dep.Name), due.Sub(s.now)+time.Second)
}

// rolloutReasons are the Progressing reasons whose message names the new
// ReplicaSet of the rollout they describe.
var rolloutReasons = map[string]bool{reasonNewRSCreated: true, reasonFoundNewRS: true, reasonRSUpdated: true,
	reasonNewRSAvailable: true, reasonTimedOut: true}

// aboutAnotherReplicaSet reports whether a Progressing condition describes
// the rollout of a ReplicaSet other than rsName.
func aboutAnotherReplicaSet(c *appsv1.DeploymentCondition, rsName string) bool {
	return c != nil && rolloutReasons[c.Reason] && !strings.Contains(c.Message, strconv.Quote(rsName))
}

// madeProgress is Kubernetes' DeploymentProgressing: more updated, ready
// or available pods, or fewer old ones, than the last status said.
func madeProgress(old, cur appsv1.DeploymentStatus) bool {
	return cur.UpdatedReplicas > old.UpdatedReplicas ||
		cur.Replicas-cur.UpdatedReplicas < old.Replicas-old.UpdatedReplicas ||
		cur.ReadyReplicas > old.ReadyReplicas ||
		cur.AvailableReplicas > old.AvailableReplicas
}

// refreshProgress sets Progressing=True with a fresh lastUpdateTime (the
// deadline counts from it), keeping lastTransitionTime if it was True.
func refreshProgress(st *appsv1.DeploymentStatus, reason, msg string, now metav1.Time) {
	c := appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: reason, Message: msg,
		LastUpdateTime: now, LastTransitionTime: now}
	if prev := condition(st.Conditions, appsv1.DeploymentProgressing); prev != nil && prev.Status == corev1.ConditionTrue {
		c.LastTransitionTime = prev.LastTransitionTime
	}
	removeCondition(st, appsv1.DeploymentProgressing)
	st.Conditions = append(st.Conditions, c)
}

func condition(conds []appsv1.DeploymentCondition, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// setCondition is Kubernetes' SetDeploymentCondition: nothing changes when
// the status and reason are the same; lastTransitionTime is kept when only
// the reason changes.
func setCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType, status corev1.ConditionStatus, reason, msg string, now metav1.Time) {
	c := appsv1.DeploymentCondition{Type: t, Status: status, Reason: reason, Message: msg, LastUpdateTime: now, LastTransitionTime: now}
	if prev := condition(st.Conditions, t); prev != nil {
		if prev.Status == status && prev.Reason == reason {
			return
		}
		if prev.Status == status {
			c.LastTransitionTime = prev.LastTransitionTime
		}
	}
	removeCondition(st, t)
	st.Conditions = append(st.Conditions, c)
}

func removeCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) {
	kept := st.Conditions[:0]
	for _, c := range st.Conditions {
		if c.Type != t {
			kept = append(kept, c)
		}
	}
	st.Conditions = kept
	if len(st.Conditions) == 0 {
		st.Conditions = nil
	}
}
