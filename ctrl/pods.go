package ctrl

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// createBatch is how many objects one CreateMany (one Raft entry) carries.
const createBatch = 500

// podActive: not terminating and not finished. Only active pods count as
// a controller's replicas, so a terminating pod (whose node may be gone
// for good) is replaced at once.
func podActive(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func podReady(p *corev1.Pod) bool {
	c := readyCondition(p)
	return c != nil && c.Status == corev1.ConditionTrue
}

// podAvailableIn says whether an active pod is available at now (Ready
// for at least minReadySeconds) and, when it is Ready but not yet
// available, how long until it is.
func podAvailableIn(p *corev1.Pod, minReadySeconds int32, now time.Time) (bool, time.Duration) {
	if !podActive(p) || !podReady(p) {
		return false, 0
	}
	if minReadySeconds == 0 {
		return true, 0
	}
	at := readyCondition(p).LastTransitionTime.Add(time.Duration(minReadySeconds) * time.Second)
	if !at.After(now) {
		return true, 0
	}
	return false, at.Sub(now)
}

func podAvailable(p *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	ok, _ := podAvailableIn(p, minReadySeconds, now)
	return ok
}

// controlledBy reports whether obj's controller reference names uid.
func controlledBy(obj metav1.Object, uid types.UID) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ref.UID == uid
}

// newControllerRef is the ownerReference a controller puts on what it
// creates or adopts.
func newControllerRef(owner metav1.Object, k *api.Kind) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{APIVersion: k.APIVersion(), Kind: k.Kind, Name: owner.GetName(), UID: owner.GetUID(),
		Controller: &t, BlockOwnerDeletion: &t}
}

// ownedPods returns the pods whose controller is uid.
func ownedPods(v *fsm.View, uid types.UID) []*corev1.Pod {
	var out []*corev1.Pod
	v.Owned(api.Pod, string(uid), func(r *fsm.Record) bool {
		if p := r.Obj.(*corev1.Pod); controlledBy(p, uid) {
			out = append(out, p)
		}
		return true
	})
	return out
}

// orphans returns the objects of kind k in namespace without a
// controller, not being deleted, whose labels sel matches: what a
// controller adopts.
func orphans(v *fsm.View, k *api.Kind, namespace string, sel labels.Selector) []*fsm.Record {
	var out []*fsm.Record
	v.Orphans(k, namespace, func(r *fsm.Record) bool {
		if r.Obj.GetDeletionTimestamp() == nil && sel.Matches(labels.Set(r.Obj.GetLabels())) {
			out = append(out, r)
		}
		return true
	})
	return out
}

// adopt makes owner the controller of an orphan. The write is conditional
// on the version read, so two controllers cannot both adopt one object.
func adopt(ctx context.Context, c Cluster, r *fsm.Record, owner metav1.Object, ownerKind *api.Kind) error {
	obj := r.Copy()
	obj.SetOwnerReferences(append(obj.GetOwnerReferences(), newControllerRef(owner, ownerKind)))
	_, err := c.Update(ctx, obj, false)
	return err
}

// release removes the ownerReference to uid from obj (it no longer
// matches its controller's selector).
func release(ctx context.Context, c Cluster, r *fsm.Record, uid types.UID) error {
	obj := r.Copy()
	var kept []metav1.OwnerReference
	for _, ref := range obj.GetOwnerReferences() {
		if ref.UID != uid {
			kept = append(kept, ref)
		}
	}
	obj.SetOwnerReferences(kept)
	_, err := c.Update(ctx, obj, false)
	return err
}

// claimPods returns the pods owner controls after adopting matching
// orphans and releasing pods that no longer match (Kubernetes'
// ControllerRefManager). An owner being deleted neither adopts nor
// releases. changed reports whether it tried to.
func claimPods(ctx context.Context, c Cluster, v *fsm.View, owner metav1.Object, k *api.Kind, sel labels.Selector) (pods []*corev1.Pod, changed bool, err error) {
	uid := owner.GetUID()
	deleting := owner.GetDeletionTimestamp() != nil
	var out []*corev1.Pod
	var stray []*fsm.Record
	v.Owned(api.Pod, string(uid), func(pr *fsm.Record) bool {
		p := pr.Obj.(*corev1.Pod)
		switch {
		case !controlledBy(p, uid):
		case sel.Matches(labels.Set(p.Labels)):
			out = append(out, p)
		case !deleting:
			stray = append(stray, pr)
		}
		return true
	})
	var firstErr error
	note := func(err error) bool {
		if err != nil && !errors.Is(err, fsm.ErrNotFound) && firstErr == nil {
			firstErr = err
		}
		return err == nil
	}
	for _, pr := range stray {
		note(release(ctx, c, pr, uid))
	}
	changed = len(stray) > 0
	if !deleting {
		for _, pr := range orphans(v, api.Pod, owner.GetNamespace(), sel) {
			changed = true
			if note(adopt(ctx, c, pr, owner, k)) {
				out = append(out, pr.Obj.(*corev1.Pod))
			}
		}
	}
	return out, changed, firstErr
}

// podNames picks n fresh pod names from prefix (Kubernetes' generateName
// shape), avoiding every existing pod: with thousands of pods, five random
// characters collide often enough that leaving it to the API would fail
// creates.
func podNames(v *fsm.View, namespace, prefix string, n int) []string {
	const maxGeneratedNameLength = 63 - 5
	if len(prefix) > maxGeneratedNameLength {
		prefix = prefix[:maxGeneratedNameLength]
	}
	taken := map[string]bool{}
	out := make([]string, 0, n)
	for len(out) < n {
		name := prefix + utilrand.String(5)
		if taken[name] || v.Get(api.Pod, namespace, name) != nil {
			continue
		}
		taken[name] = true
		out = append(out, name)
	}
	return out
}

// podFromTemplate builds a pod of owner from a template.
func podFromTemplate(t *corev1.PodTemplateSpec, namespace, name, generateName string, ref metav1.OwnerReference) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, GenerateName: generateName, Namespace: namespace,
		Labels: map[string]string{}, Annotations: map[string]string{}, OwnerReferences: []metav1.OwnerReference{ref}}}
	for k, v := range t.Labels {
		p.Labels[k] = v
	}
	for k, v := range t.Annotations {
		p.Annotations[k] = v
	}
	p.Finalizers = append(p.Finalizers, t.Finalizers...)
	t.Spec.DeepCopyInto(&p.Spec)
	api.Pod.SetTypeMeta(p)
	return p
}

// createParallel is how many CreateMany calls (Raft entries) a large
// create keeps in flight: while one entry commits and is applied, the
// next is validated and proposed, as Kubernetes' controllers create a
// batch's pods in parallel. The first batch goes alone, so that pods that
// all fail (a namespace being deleted) fail once.
const createParallel = 3

// createPods creates n pods, newPod(0) to newPod(n-1), in batches of
// createBatch (one Raft entry each), starting no batch after one has
// failed. Each batch's pods are built just before it is sent, so that a
// scale-up by tens of thousands does not hold them all. It returns how
// many were created and the first error.
func createPods(ctx context.Context, c Cluster, n int, newPod func(i int) *corev1.Pod) (int, error) {
	var (
		mu      sync.Mutex
		created int
		first   error
		wg      sync.WaitGroup
	)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	slots := make(chan struct{}, createParallel)
	for start := 0; start < n; start += createBatch {
		slots <- struct{}{}
		if failed() || ctx.Err() != nil {
			<-slots
			break
		}
		batch := make([]*corev1.Pod, 0, min(createBatch, n-start))
		for i := start; i < min(start+createBatch, n); i++ {
			batch = append(batch, newPod(i))
		}
		wg.Add(1)
		go func(batch []*corev1.Pod) {
			defer wg.Done()
			defer func() { <-slots }()
			made, err := createBatchOf(ctx, c, batch)
			mu.Lock()
			created += made
			if err != nil && first == nil {
				first = err
			}
			mu.Unlock()
		}(batch)
		if start == 0 {
			wg.Wait()
		}
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil && created < n {
		first = ctx.Err()
	}
	return created, first
}

// createBatchOf creates pods in one CreateMany.
func createBatchOf(ctx context.Context, c Cluster, pods []*corev1.Pod) (int, error) {
	objs := make([]api.Object, len(pods))
	for i, p := range pods {
		objs[i] = p
	}
	res, err := c.CreateMany(ctx, objs)
	if err != nil {
		return 0, err
	}
	created := 0
	var first error
	for i, r := range res {
		switch {
		case r.Err == nil:
			created++
		case first == nil:
			first = fmt.Errorf("creating pod %s: %w", objs[i].GetName(), r.Err)
		}
	}
	return created, first
}

// deletePods deletes pods (gracefully, each conditional on its uid) in
// batches of one Raft entry each; pods already gone are not an error.
func deletePods(ctx context.Context, c Cluster, pods []*corev1.Pod, grace *int64) (int, error) {
	deleted := 0
	now := time.Now().UnixNano()
	for start := 0; start < len(pods); start += createBatch {
		end := min(start+createBatch, len(pods))
		batch := &fsm.Batch{}
		for _, p := range pods[start:end] {
			batch.Commands = append(batch.Commands, &fsm.Delete{Kind: api.Pod.Kind, Namespace: p.Namespace, Name: p.Name,
				UID: string(p.UID), DeletionTime: now, Grace: grace})
		}
		res, err := c.Propose(ctx, batch)
		if err != nil {
			return deleted, err
		}
		for _, r := range res.Batch {
			switch {
			case r.Err == nil:
				deleted++
			case errors.Is(r.Err, fsm.ErrNotFound), errors.Is(r.Err, fsm.ErrConflict):
				// already gone, or replaced by a pod of the same name
			default:
				return deleted, r.Err
			}
		}
	}
	return deleted, nil
}

// podsToDelete orders pods for scale-down the way Kubernetes does
// (controller.ActivePods): unscheduled before scheduled, pending before
// unknown before running, not ready before ready, ready for less time
// before longer, more restarts before fewer, younger before older.
func podsToDelete(pods []*corev1.Pod) {
	phaseRank := map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}
	restarts := func(p *corev1.Pod) int32 {
		var n int32
		for _, c := range p.Status.ContainerStatuses {
			n = max(n, c.RestartCount)
		}
		return n
	}
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if (a.Spec.NodeName == "") != (b.Spec.NodeName == "") {
			return a.Spec.NodeName == ""
		}
		if ra, rb := phaseRank[a.Status.Phase], phaseRank[b.Status.Phase]; ra != rb {
			return ra < rb
		}
		if podReady(a) != podReady(b) {
			return !podReady(a)
		}
		if podReady(a) {
			ta, tb := readyCondition(a).LastTransitionTime, readyCondition(b).LastTransitionTime
			if !ta.Equal(&tb) {
				return tb.Before(&ta) // ready more recently goes first
			}
		}
		if ra, rb := restarts(a), restarts(b); ra != rb {
			return ra > rb
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.Name > b.Name
	})
}
