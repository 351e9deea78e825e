package ctrl

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// Labels and annotations of Deployments and their ReplicaSets (Kubernetes').
const (
	podTemplateHashLabel      = appsv1.DefaultDeploymentUniqueLabelKey // "pod-template-hash"
	revisionAnnotation        = "deployment.kubernetes.io/revision"
	revisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	desiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	maxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
)

// deployments rolls Deployments out through one ReplicaSet per pod
// template. The ReplicaSet whose template equals the Deployment's
// (ignoring the pod-template-hash label) is the new one; every other is
// old. A rollback is the template changing back to an old ReplicaSet's:
// that ReplicaSet becomes the new one again and gets the next revision
// (what `kubectl rollout undo` and `orchctl rollout undo` rely on), and
// `rollout restart` is a change of the template annotation
// kubectl.kubernetes.io/restartedAt, hence a new template.
//
// Availability is counted from pods, not from ReplicaSet statuses (which
// lag): a ReplicaSet counts min(available pods, spec.replicas) available,
// since its controller deletes unavailable pods first when it scales
// down, and max(active pods, spec.replicas) towards the surge. So a
// rolling update keeps at least replicas - maxUnavailable pods available
// and at most replicas + maxSurge pods at every moment, whatever the
// order in which the two controllers act.
type deployments struct {
	c   Cluster
	rec *recorder
	q   *queue
}

func newDeploymentController(c Cluster, rec *recorder) *controller {
	d := &deployments{c: c, rec: rec, q: newQueue()}
	return &controller{name: "deployment", kinds: []*api.Kind{api.Deployment, api.ReplicaSet, api.Pod}, queue: d.q,
		list: d.list, keysFor: d.keysFor, reconcile: d.reconcile}
}

func (d *deployments) list(v *fsm.View, add func(string)) {
	v.List(api.Deployment, "", func(rec *fsm.Record) bool {
		add(rec.Key)
		return true
	})
}

func (d *deployments) keysFor(ev fsm.Event, v *fsm.View, add func(string)) {
	switch ev.Record.Kind {
	case api.Deployment:
		add(ev.Record.Key)
	case api.ReplicaSet:
		d.replicaSetKeys(ev.Record.Obj, ev.Type == fsm.Added || ev.Prev != nil && !labels.Equals(ev.Prev.Obj.GetLabels(), ev.Record.Obj.GetLabels()), v, add)
		if ev.Prev != nil {
			d.replicaSetKeys(ev.Prev.Obj, false, v, add)
		}
	case api.Pod:
		if ev.Type == fsm.Modified && podState(ev.Prev.Obj.(*corev1.Pod)) == podState(ev.Record.Obj.(*corev1.Pod)) {
			return
		}
		ref := metav1.GetControllerOf(ev.Record.Obj)
		if ref == nil || ref.Kind != api.ReplicaSet.Kind {
			return
		}
		if rs := v.Get(api.ReplicaSet, ev.Record.Obj.GetNamespace(), ref.Name); rs != nil {
			d.replicaSetKeys(rs.Obj, false, v, add)
		}
	}
}

// podState is what a Deployment's decisions depend on in a pod.
type podStateKey struct {
	active, ready bool
	readySince    int64
	phase         corev1.PodPhase
}

func podState(p *corev1.Pod) podStateKey {
	s := podStateKey{active: podActive(p), ready: podReady(p), phase: p.Status.Phase}
	if c := readyCondition(p); c != nil {
		s.readySince = c.LastTransitionTime.Unix()
	}
	return s
}

// replicaSetKeys adds the Deployment controlling rs or, for an orphan
// with new labels, the Deployments that could adopt it.
func (d *deployments) replicaSetKeys(rs api.Object, lookForAdopters bool, v *fsm.View, add func(string)) {
	if ref := metav1.GetControllerOf(rs); ref != nil {
		if ref.Kind == api.Deployment.Kind {
			add(nsKey(rs.GetNamespace(), ref.Name))
		}
		return
	}
	if !lookForAdopters || rs.GetDeletionTimestamp() != nil {
		return
	}
	v.List(api.Deployment, rs.GetNamespace(), func(rec *fsm.Record) bool {
		dep := rec.Obj.(*appsv1.Deployment)
		if sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.GetLabels())) {
			add(rec.Key)
		}
		return true
	})
}

// rollout is a Deployment and what it controls, as observed in one view.
type rollout struct {
	d     *appsv1.Deployment
	now   time.Time
	newRS *appsv1.ReplicaSet   // nil until created
	old   []*appsv1.ReplicaSet // oldest first
	pods  map[types.UID][]*corev1.Pod
	// created names the new ReplicaSet this reconcile created, reused an
	// old one it made new again (a rollback).
	created, reused string
}

func observe(v *fsm.View, dep *appsv1.Deployment) *rollout {
	s := &rollout{d: dep, now: time.Now(), pods: map[types.UID][]*corev1.Pod{}}
	var all []*appsv1.ReplicaSet
	v.Owned(api.ReplicaSet, string(dep.UID), func(r *fsm.Record) bool {
		if rs := r.Obj.(*appsv1.ReplicaSet); controlledBy(rs, dep.UID) {
			all = append(all, rs)
		}
		return true
	})
	sort.Slice(all, func(i, j int) bool {
		a, b := all[i], all[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	for _, rs := range all {
		if s.newRS == nil && equalIgnoreHash(&rs.Spec.Template, &dep.Spec.Template) {
			s.newRS = rs
		} else {
			s.old = append(s.old, rs)
		}
		s.pods[rs.UID] = ownedPods(v, rs.UID)
	}
	return s
}

func (s *rollout) all() []*appsv1.ReplicaSet {
	if s.newRS == nil {
		return s.old
	}
	return append(append([]*appsv1.ReplicaSet{}, s.old...), s.newRS)
}

func (s *rollout) replicas() int32 { return replicasOf(s.d.Spec.Replicas) }

func replicasOf(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func (s *rollout) spec(rs *appsv1.ReplicaSet) int32 {
	if rs == nil {
		return 0
	}
	return replicasOf(rs.Spec.Replicas)
}

// active is how many of rs's pods are active, availablePods how many are
// available.
func (s *rollout) active(rs *appsv1.ReplicaSet) int32 {
	var n int32
	for _, p := range s.pods[rs.UID] {
		if podActive(p) {
			n++
		}
	}
	return n
}

func (s *rollout) availablePods(rs *appsv1.ReplicaSet) int32 {
	var n int32
	for _, p := range s.pods[rs.UID] {
		if podAvailable(p, s.d.Spec.MinReadySeconds, s.now) {
			n++
		}
	}
	return n
}

// available is what rs will keep available once its controller has
// acted on spec.replicas.
func (s *rollout) available(rs *appsv1.ReplicaSet) int32 {
	if rs == nil {
		return 0
	}
	return min(s.availablePods(rs), s.spec(rs))
}

// count is how many pods rs may have, now or once created.
func (s *rollout) count(rs *appsv1.ReplicaSet) int32 { return max(s.spec(rs), s.active(rs)) }

// maxSurge and maxUnavailable resolved like Kubernetes
// (deploymentutil.ResolveFenceposts): surge rounds up, unavailable
// down, and if both come to zero, one pod may be unavailable.
func fenceposts(d *appsv1.Deployment) (surge, unavailable int32) {
	ru := d.Spec.Strategy.RollingUpdate
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil {
		return 0, 0
	}
	replicas := int(replicasOf(d.Spec.Replicas))
	def := intstr.FromString("25%")
	ms, mu := ru.MaxSurge, ru.MaxUnavailable
	if ms == nil {
		ms = &def
	}
	if mu == nil {
		mu = &def
	}
	s, err1 := intstr.GetScaledValueFromIntOrPercent(ms, replicas, true)
	u, err2 := intstr.GetScaledValueFromIntOrPercent(mu, replicas, false)
	if err1 != nil || err2 != nil {
		return 0, 1
	}
	if s == 0 && u == 0 {
		u = 1
	}
	return int32(s), int32(u)
}

// maxUnavailable is Kubernetes' deploymentutil.MaxUnavailable: 0 for
// Recreate, never more than replicas.
func maxUnavailable(d *appsv1.Deployment) int32 {
	replicas := replicasOf(d.Spec.Replicas)
	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || replicas == 0 {
		return 0
	}
	_, u := fenceposts(d)
	return min(u, replicas)
}

func (d *deployments) reconcile(ctx context.Context, key string) error {
	ns, name := splitKey(key)
	v := d.c.View()
	rec := v.Get(api.Deployment, ns, name)
	if rec == nil {
		return nil // its ReplicaSets are the garbage collector's
	}
	dep := rec.Obj.(*appsv1.Deployment)
	sel, err := metav1.LabelSelectorAsSelector(dep.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil // refused by validation
	}
	if changed, err := d.claim(ctx, v, dep, sel); changed || err != nil {
		return err // the adopted or released ReplicaSets' events bring it back
	}
	s := observe(v, dep)
	switch {
	case dep.DeletionTimestamp != nil:
	case dep.Spec.Paused:
		err = d.syncPaused(ctx, s)
	case dep.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType:
		err = d.rolloutRecreate(ctx, s)
	default:
		err = d.rolloutRolling(ctx, s)
	}
	if err != nil {
		return err
	}
	return d.syncStatus(ctx, key, dep, s.created, s.reused)
}

// claim adopts orphan ReplicaSets that match the selector and releases
// owned ones that no longer do; changed reports whether it wrote.
func (d *deployments) claim(ctx context.Context, v *fsm.View, dep *appsv1.Deployment, sel labels.Selector) (bool, error) {
	var stray []*fsm.Record
	v.Owned(api.ReplicaSet, string(dep.UID), func(r *fsm.Record) bool {
		if controlledBy(r.Obj, dep.UID) && !sel.Matches(labels.Set(r.Obj.GetLabels())) {
			stray = append(stray, r)
		}
		return true
	})
	var adoptable []*fsm.Record
	if dep.DeletionTimestamp == nil {
		adoptable = orphans(v, api.ReplicaSet, dep.Namespace, sel)
	}
	changed := false
	for _, r := range stray {
		if err := release(ctx, d.c, r, dep.UID); err != nil && !errors.Is(err, fsm.ErrNotFound) {
			return changed, err
		}
		changed = true
	}
	for _, r := range adoptable {
		if err := adopt(ctx, d.c, r, dep, api.Deployment); err != nil && !errors.Is(err, fsm.ErrNotFound) {
			return changed, err
		}
		changed = true
	}
	return changed, nil
}

// scale sets rs's spec.replicas (and the annotations kubectl shows).
func (d *deployments) scale(ctx context.Context, s *rollout, rs *appsv1.ReplicaSet, to int32) error {
	from := s.spec(rs)
	if from == to {
		return nil
	}
	up := rs.DeepCopy()
	up.Spec.Replicas = &to
	if up.Annotations == nil {
		up.Annotations = map[string]string{}
	}
	surge, _ := fenceposts(s.d)
	up.Annotations[desiredReplicasAnnotation] = strconv.Itoa(int(s.replicas()))
	up.Annotations[maxReplicasAnnotation] = strconv.Itoa(int(s.replicas() + surge))
	rec, err := d.c.Update(ctx, up, false)
	if err != nil {
		return err
	}
	next := rec.Obj.(*appsv1.ReplicaSet)
	if s.newRS == rs {
		s.newRS = next
	}
	for i := range s.old {
		if s.old[i] == rs {
			s.old[i] = next
		}
	}
	verb := "up"
	if to < from {
		verb = "down"
	}
	d.rec.event(api.Deployment, s.d, corev1.EventTypeNormal, deploymentComponent, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", verb, rs.Name, from, to)
	return nil
}

func ptr[T any](v T) *T { return &v }
