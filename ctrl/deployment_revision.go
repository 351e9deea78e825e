package ctrl

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// Revisions. Every ReplicaSet of a Deployment carries the revision it was
// last made new at; the Deployment carries its new ReplicaSet's. The new
// ReplicaSet also carries the Deployment's own annotations (among them
// kubernetes.io/change-cause, which `rollout history` prints per
// revision and `rollout undo` copies back), as Kubernetes does.

// annotationsNotCopied are the Deployment annotations a ReplicaSet does
// not take (Kubernetes' skipCopyAnnotation): the rollout machinery's own,
// and kubectl's record of the last applied manifest.
var annotationsNotCopied = map[string]bool{
	corev1.LastAppliedConfigAnnotation:  true,
	revisionAnnotation:                  true,
	revisionHistoryAnnotation:           true,
	desiredReplicasAnnotation:           true,
	maxReplicasAnnotation:               true,
	"deprecated.deployment.rollback.to": true,
}

// copyDeploymentAnnotations copies dep's annotations onto rs and reports
// whether any changed. Like Kubernetes it never removes one: an
// annotation dropped from the Deployment stays on the ReplicaSets that
// recorded it.
func copyDeploymentAnnotations(dep *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	changed := false
	for k, v := range dep.Annotations {
		if annotationsNotCopied[k] {
			continue
		}
		if cur, ok := rs.Annotations[k]; ok && cur == v {
			continue
		}
		if rs.Annotations == nil {
			rs.Annotations = map[string]string{}
		}
		rs.Annotations[k] = v
		changed = true
	}
	return changed
}

func revision(obj metav1.Object) int64 {
	v, _ := strconv.ParseInt(obj.GetAnnotations()[revisionAnnotation], 10, 64)
	return v
}

// ensureNewRS gives an existing new ReplicaSet the next revision (a
// rollback) and the Deployment's annotations or, when create is set,
// creates it with initial() replicas, and keeps the Deployment's revision
// annotation equal to its own.
func (d *deployments) ensureNewRS(ctx context.Context, s *rollout, create bool, initial func() int32) error {
	dep := s.d
	var maxOld int64
	for _, rs := range s.old {
		maxOld = max(maxOld, revision(rs))
	}
	next := strconv.FormatInt(maxOld+1, 10)
	if rs := s.newRS; rs != nil {
		up := rs.DeepCopy()
		changed := copyDeploymentAnnotations(dep, up)
		bump := revision(rs) <= maxOld
		if bump {
			if up.Annotations == nil {
				up.Annotations = map[string]string{}
			}
			if cur := rs.Annotations[revisionAnnotation]; cur != "" {
				up.Annotations[revisionHistoryAnnotation] = strings.Trim(up.Annotations[revisionHistoryAnnotation]+","+cur, ",")
			}
			up.Annotations[revisionAnnotation] = next
			changed = true
		}
		if up.Spec.MinReadySeconds != dep.Spec.MinReadySeconds {
			up.Spec.MinReadySeconds = dep.Spec.MinReadySeconds
			changed = true
		}
		if changed {
			rec, err := d.c.Update(ctx, up, false)
			if err != nil {
				return err
			}
			s.newRS = rec.Obj.(*appsv1.ReplicaSet)
			if bump {
				s.reused = rs.Name
			}
		}
		return d.setDeploymentRevision(ctx, dep, s.newRS.Annotations[revisionAnnotation])
	}
	if !create {
		return nil
	}
	hash := templateHash(&dep.Spec.Template, dep.Status.CollisionCount)
	rs := d.newReplicaSet(dep, hash, next, initial())
	rec, err := d.c.Create(ctx, rs)
	if errors.Is(err, fsm.ErrAlreadyExists) {
		// A ReplicaSet of that name with another template, or not ours:
		// a hash collision. Kubernetes' answer: count it, which changes
		// the hash.
		up := dep.DeepCopy()
		var n int32
		if dep.Status.CollisionCount != nil {
			n = *dep.Status.CollisionCount
		}
		up.Status.CollisionCount = ptr(n + 1)
		if _, err := d.c.Update(ctx, up, true); err != nil {
			return err
		}
		return fmt.Errorf("%w: replica set %s exists with another template (hash collision)", errRetry, rs.Name)
	}
	if err != nil {
		d.rec.event(api.Deployment, dep, corev1.EventTypeWarning, deploymentComponent, "FailedCreate", "Failed to create new replica set %q: %v", rs.Name, err)
		return err
	}
	s.newRS = rec.Obj.(*appsv1.ReplicaSet)
	s.pods[s.newRS.UID] = nil
	s.created = s.newRS.Name
	d.rec.event(api.Deployment, dep, corev1.EventTypeNormal, deploymentComponent, "ScalingReplicaSet", "Scaled up replica set %s from 0 to %d", rs.Name, s.spec(s.newRS))
	return d.setDeploymentRevision(ctx, dep, next)
}

func (d *deployments) newReplicaSet(dep *appsv1.Deployment, hash, revision string, replicas int32) *appsv1.ReplicaSet {
	tmpl := dep.Spec.Template.DeepCopy()
	if tmpl.Labels == nil {
		tmpl.Labels = map[string]string{}
	}
	tmpl.Labels[podTemplateHashLabel] = hash
	sel := dep.Spec.Selector.DeepCopy()
	if sel.MatchLabels == nil {
		sel.MatchLabels = map[string]string{}
	}
	sel.MatchLabels[podTemplateHashLabel] = hash
	surge, _ := fenceposts(dep)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-" + hash, Namespace: dep.Namespace, Labels: tmpl.Labels,
			Annotations: map[string]string{revisionAnnotation: revision,
				desiredReplicasAnnotation: strconv.Itoa(int(replicasOf(dep.Spec.Replicas))),
				maxReplicasAnnotation:     strconv.Itoa(int(replicasOf(dep.Spec.Replicas) + surge))},
			OwnerReferences: []metav1.OwnerReference{newControllerRef(dep, api.Deployment)}},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, MinReadySeconds: dep.Spec.MinReadySeconds, Selector: sel, Template: *tmpl},
	}
	copyDeploymentAnnotations(dep, rs)
	api.ReplicaSet.SetTypeMeta(rs)
	return rs
}

func (d *deployments) setDeploymentRevision(ctx context.Context, dep *appsv1.Deployment, rev string) error {
	if rev == "" || dep.Annotations[revisionAnnotation] == rev {
		return nil
	}
	up := dep.DeepCopy()
	if up.Annotations == nil {
		up.Annotations = map[string]string{}
	}
	up.Annotations[revisionAnnotation] = rev
	_, err := d.c.Update(ctx, up, false)
	return err
}
