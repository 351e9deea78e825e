package ctrl

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// replicaSets keeps spec.replicas active pods for every ReplicaSet.
//
// A ReplicaSet owns the pods that match its selector and carry a
// controller ownerReference to it; it adopts matching orphans and releases
// pods that stopped matching, as Kubernetes does. Terminating and finished
// pods do not count, so a pod stuck terminating on a dead node is replaced
// at once.
//
// Kubernetes' ReplicaSet controller keeps "expectations" of the creates
// and deletes it has issued, because it reads pods from an informer cache
// that may not show them yet; without them it would create the same pods
// twice. Here every reconcile reads the leader's state, which already
// holds the effects of every write that returned, and one key is never
// reconciled twice at once; a new leader starts only after its Raft
// barrier, so it too sees every write its predecessor committed, and
// writes the old leader had not committed can never commit after that.
// So counting pods in the latest view is exact and expectations are not
// needed.
//
// A reconcile reads every pod of the ReplicaSet, so one with tens of
// thousands of pods costs tens of milliseconds, and its pods' status
// changes (bound, Running, Ready: three per pod in a scale-up) would
// have it reconciled back to back, a core's worth. A change that only
// moves the status counts (readiness, binding) therefore queues the
// ReplicaSet after ten times what its last reading of its pods cost (at
// most five seconds): at most a tenth of a core on status for any size,
// and at once for small ones. So does a change of the ReplicaSet that
// leaves its spec and deletion alone (its own status writes, which would
// otherwise queue it again at once). Changes that decide what to create
// or delete (a pod added, terminating, finished or relabelled, a new
// spec) queue it at once.
type replicaSets struct {
	c   Cluster
	rec *recorder
	q   *queue

	mu   sync.Mutex
	cost map[string]time.Duration // what the last reconcile of a key took
}

// statusDelayFactor times the last reconcile's cost (reading its pods and
// computing the status) is how long a status-only change waits, at most
// maxStatusDelay.
const (
	statusDelayFactor = 10
	maxStatusDelay    = 5 * time.Second
)

func newReplicaSetController(c Cluster, rec *recorder) *controller {
	r := &replicaSets{c: c, rec: rec, q: newQueue(), cost: map[string]time.Duration{}}
	return &controller{name: "replicaset", kinds: []*api.Kind{api.ReplicaSet, api.Pod}, queue: r.q,
		list: r.list, keysFor: r.keysFor, reconcile: r.reconcile}
}

func (r *replicaSets) list(v *fsm.View, add func(string)) {
	v.List(api.ReplicaSet, "", func(rec *fsm.Record) bool {
		add(rec.Key)
		return true
	})
}

func (r *replicaSets) keysFor(ev fsm.Event, v *fsm.View, add func(string)) {
	if ev.Record.Kind == api.ReplicaSet {
		if ev.Type == fsm.Modified && ev.Record.Obj.GetGeneration() == ev.Prev.Obj.GetGeneration() &&
			ev.Record.Obj.GetDeletionTimestamp().Equal(ev.Prev.Obj.GetDeletionTimestamp()) {
			// Its status (this controller's last write, usually): what a
			// reconcile does depends on the spec and the pods.
			add = r.addForStatus
		}
		add(ev.Record.Key)
		return
	}
	pod := ev.Record.Obj.(*corev1.Pod)
	relabelled := ev.Prev != nil && (!labels.Equals(pod.Labels, ev.Prev.Obj.GetLabels()) ||
		!apiequality.Semantic.DeepEqual(pod.OwnerReferences, ev.Prev.Obj.GetOwnerReferences()))
	if ev.Type == fsm.Modified && !relabelled && podActive(pod) == podActive(ev.Prev.Obj.(*corev1.Pod)) {
		add = r.addForStatus
	}
	r.podKeys(pod, ev.Type == fsm.Added || relabelled, v, add)
	if relabelled {
		r.podKeys(ev.Prev.Obj.(*corev1.Pod), false, v, add)
	}
}

// podKeys adds the ReplicaSet that controls pod or, for an orphan whose
// labels are new, every ReplicaSet that could adopt it.
func (r *replicaSets) podKeys(pod *corev1.Pod, lookForAdopters bool, v *fsm.View, add func(string)) {
	if ref := metav1.GetControllerOf(pod); ref != nil {
		if ref.Kind == api.ReplicaSet.Kind {
			add(nsKey(pod.Namespace, ref.Name))
		}
		return
	}
	if !lookForAdopters || pod.DeletionTimestamp != nil {
		return
	}
	v.List(api.ReplicaSet, pod.Namespace, func(rec *fsm.Record) bool {
		rs := rec.Obj.(*appsv1.ReplicaSet)
		if sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels)) {
			add(rec.Key)
		}
		return true
	})
}

// addForStatus queues key for a change of its status counts only.
func (r *replicaSets) addForStatus(key string) {
	r.mu.Lock()
	d := min(statusDelayFactor*r.cost[key], maxStatusDelay)
	r.mu.Unlock()
	r.q.AddAfter(key, d)
}

func (r *replicaSets) reconcile(ctx context.Context, key string) error {
	start := time.Now()
	ns, name := splitKey(key)
	v := r.c.View()
	rec := v.Get(api.ReplicaSet, ns, name)
	if rec == nil {
		r.mu.Lock()
		delete(r.cost, key)
		r.mu.Unlock()
		return nil // its pods are the garbage collector's
	}
	rs := rec.Obj.(*appsv1.ReplicaSet)
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil || sel.Empty() {
		return nil // refused by validation; nothing sane to do
	}
	pods, changed, err := claimPods(ctx, r.c, v, rs, api.ReplicaSet, sel)
	var manageErr error
	if err == nil && rs.DeletionTimestamp == nil {
		var made bool
		made, manageErr = r.manage(ctx, v, rs, pods)
		changed = changed || made
		err = manageErr
	}
	// Without writes (the usual case), the pods just read are the ones
	// the status counts; after writes, the status counts what they did.
	counted := pods
	if changed || err != nil || rs.DeletionTimestamp != nil {
		v, counted = nil, nil
	}
	read := start
	if changed {
		read = time.Time{}
	}
	if serr := r.syncStatus(ctx, key, rs.UID, manageErr, v, counted, read); err == nil {
		err = serr
	}
	return err
}

// noteCost records what reading a ReplicaSet's pods and computing its
// status took (not writes: a scale-up's reconcile lasts as long as
// creating its pods).
func (r *replicaSets) noteCost(key string, d time.Duration) {
	r.mu.Lock()
	r.cost[key] = d
	r.mu.Unlock()
}

// manage creates or deletes pods until spec.replicas are active; made
// reports whether it tried to.
func (r *replicaSets) manage(ctx context.Context, v *fsm.View, rs *appsv1.ReplicaSet, pods []*corev1.Pod) (made bool, err error) {
	var active []*corev1.Pod
	for _, p := range pods {
		if podActive(p) {
			active = append(active, p)
		}
	}
	want := 1
	if rs.Spec.Replicas != nil {
		want = int(*rs.Spec.Replicas)
	}
	diff := len(active) - want
	switch {
	case diff < 0:
		prefix := rs.Name + "-"
		ref := newControllerRef(rs, api.ReplicaSet)
		names := podNames(v, rs.Namespace, prefix, -diff)
		n, err := createPods(ctx, r.c, len(names), func(i int) *corev1.Pod {
			return podFromTemplate(&rs.Spec.Template, rs.Namespace, names[i], prefix, ref)
		})
		if n > 0 {
			r.rec.event(api.ReplicaSet, rs, corev1.EventTypeNormal, replicaSetComponent, "SuccessfulCreate", "%s", countedPods("Created", n, names[0]))
		}
		if err != nil && ctx.Err() == nil {
			r.rec.event(api.ReplicaSet, rs, corev1.EventTypeWarning, replicaSetComponent, "FailedCreate", "Error creating: %v", err)
			return true, &replicaError{reason: "FailedCreate", err: err}
		}
		return true, err
	case diff > 0:
		podsToDelete(active)
		victims := active[:diff]
		n, err := deletePods(ctx, r.c, victims, nil)
		if n > 0 {
			r.rec.event(api.ReplicaSet, rs, corev1.EventTypeNormal, replicaSetComponent, "SuccessfulDelete", "%s", countedPods("Deleted", n, victims[0].Name))
		}
		if err != nil && ctx.Err() == nil {
			r.rec.event(api.ReplicaSet, rs, corev1.EventTypeWarning, replicaSetComponent, "FailedDelete", "Error deleting: %v", err)
			return true, &replicaError{reason: "FailedDelete", err: err}
		}
		return true, err
	}
	return false, nil
}

// countedPods is an event message about n pods: one by name (name), many
// by number (an event per pod would double the log's load in a scale-up).
func countedPods(verb string, n int, name string) string {
	if n == 1 {
		return verb + " pod: " + name
	}
	return verb + " " + strconv.Itoa(n) + " pods"
}

// replicaError is a failed create or delete, reported in the
// ReplicaFailure condition.
type replicaError struct {
	reason string
	err    error
}

func (e *replicaError) Error() string { return e.err.Error() }
func (e *replicaError) Unwrap() error { return e.err }

// syncStatus writes the status computed from v and the ReplicaSet's pods
// in it (or, when v is nil, from the latest view), if it changed, and
// schedules a reconcile for when a Ready pod becomes available
// (minReadySeconds). Unless read is zero, the time from read to the
// status computed is the reconcile's cost (noteCost).
func (r *replicaSets) syncStatus(ctx context.Context, key string, uid types.UID, manageErr error, v *fsm.View, pods []*corev1.Pod, read time.Time) error {
	ns, name := splitKey(key)
	if v == nil {
		v = r.c.View()
		pods = ownedPods(v, uid)
	}
	rec := v.Get(api.ReplicaSet, ns, name)
	if rec == nil || rec.Obj.GetUID() != uid {
		return nil
	}
	rs := rec.Obj.(*appsv1.ReplicaSet)
	now := time.Now()
	st := appsv1.ReplicaSetStatus{ObservedGeneration: rs.Generation}
	templateLabels := labels.SelectorFromSet(rs.Spec.Template.Labels)
	var terminating int32
	var wait time.Duration
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			terminating++
		}
		if !podActive(p) {
			continue
		}
		st.Replicas++
		if templateLabels.Matches(labels.Set(p.Labels)) {
			st.FullyLabeledReplicas++
		}
		if podReady(p) {
			st.ReadyReplicas++
		}
		if ok, in := podAvailableIn(p, rs.Spec.MinReadySeconds, now); ok {
			st.AvailableReplicas++
		} else if in > 0 && (wait == 0 || in < wait) {
			wait = in
		}
	}
	st.TerminatingReplicas = &terminating
	st.Conditions = replicaFailure(rs.Status.Conditions, manageErr, now)
	if wait > 0 {
		r.q.AddAfter(key, wait+10*time.Millisecond)
	}
	if !read.IsZero() {
		r.noteCost(key, time.Since(read))
	}
	if apiequality.Semantic.DeepEqual(rs.Status, st) {
		return nil
	}
	next := rs.DeepCopy()
	next.Status = st
	_, err := r.c.Update(ctx, next, true)
	return err
}

// replicaFailure sets or clears the ReplicaFailure condition.
func replicaFailure(conds []appsv1.ReplicaSetCondition, manageErr error, now time.Time) []appsv1.ReplicaSetCondition {
	var out []appsv1.ReplicaSetCondition
	var prev *appsv1.ReplicaSetCondition
	for i := range conds {
		if conds[i].Type == appsv1.ReplicaSetReplicaFailure {
			prev = &conds[i]
			continue
		}
		out = append(out, conds[i])
	}
	var failed *replicaError
	if !errors.As(manageErr, &failed) {
		return out
	}
	c := appsv1.ReplicaSetCondition{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
		Reason: failed.reason, Message: failed.Error(), LastTransitionTime: metav1.NewTime(now.Truncate(time.Second))}
	if prev != nil && prev.Status == c.Status {
		c.LastTransitionTime = prev.LastTransitionTime
	}
	return append(out, c)
}
