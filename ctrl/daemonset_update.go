package ctrl

import (
	"context"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// rollingUpdate replaces pods of an older template node by node, as
// Kubernetes' DaemonSet rolling update does. Without surge, an old pod is
// deleted (and then recreated by manage) while fewer than maxUnavailable
// nodes lack an available pod; old pods that are not available anyway go
// at once. With maxSurge, a new pod starts next to the old one on up to
// maxSurge nodes at a time and the old one goes when the new one is
// available. A node that should run a pod and has none counts as
// unavailable (stricter than Kubernetes, so a failing create never lets
// the update take down more nodes).
func (r *daemonSets) rollingUpdate(ctx context.Context, v *fsm.View, s *daemonState) error {
	surge, maxUnavailable := r.fenceposts(s)
	now := time.Now()
	minReady := s.ds.Spec.MinReadySeconds
	var del []*corev1.Pod
	var candidates []*corev1.Pod // old, available: deleting costs availability
	var surgeOn, surgeCandidates []string
	unavailable, surging := 0, 0
	for _, node := range s.nodes {
		run, keep := shouldRun(s.ds, node)
		if !keep {
			continue
		}
		var newPod, oldPod *corev1.Pod
		for _, p := range s.byNode[node.Name] {
			if p.Labels[revisionHashLabel] == s.hash {
				newPod = p
			} else {
				oldPod = p
			}
		}
		if surge == 0 {
			switch {
			case newPod == nil && oldPod == nil:
				if run {
					unavailable++
				}
			case newPod != nil && oldPod != nil:
				unavailable++
			case newPod != nil:
				if !podAvailable(newPod, minReady, now) {
					unavailable++
				}
			case !podAvailable(oldPod, minReady, now):
				del = append(del, oldPod)
			default:
				candidates = append(candidates, oldPod)
			}
			continue
		}
		switch {
		case oldPod == nil:
		case newPod == nil && !podAvailable(oldPod, minReady, now):
			if !run {
				del = append(del, oldPod)
			} else {
				surgeOn = append(surgeOn, node.Name)
			}
		case newPod == nil:
			surgeCandidates = append(surgeCandidates, node.Name)
		case !podAvailable(newPod, minReady, now):
			surging++
		default:
			del = append(del, oldPod)
		}
	}
	if surge == 0 {
		room := min(max(maxUnavailable-unavailable, 0), len(candidates))
		del = append(del, candidates[:room]...)
	} else {
		room := min(max(surge-surging, 0), len(surgeCandidates))
		surgeOn = append(surgeOn, surgeCandidates[:room]...)
		if err := r.createOn(ctx, v, s, surgeOn); err != nil {
			return err
		}
	}
	if len(del) == 0 {
		return nil
	}
	n, err := deletePods(ctx, r.c, del, nil)
	if n > 0 {
		r.rec.event(api.DaemonSet, s.ds, corev1.EventTypeNormal, daemonSetComponent, "SuccessfulDelete", "%s", countedPods("Deleted", n, del[0].Name))
	}
	return err
}

// syncStatus writes the DaemonSet's status from the latest view if it
// changed (and only if the spec did not change since the reconcile read
// it).
func (r *daemonSets) syncStatus(ctx context.Context, key string, seen *appsv1.DaemonSet) error {
	ns, name := splitKey(key)
	v := r.c.View()
	rec := v.Get(api.DaemonSet, ns, name)
	if rec == nil || rec.Obj.GetUID() != seen.UID || rec.Obj.GetGeneration() != seen.Generation {
		return nil
	}
	ds := rec.Obj.(*appsv1.DaemonSet)
	s := observeDaemons(v, ds, ownedPods(v, ds.UID))
	now := time.Now()
	st := appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, CollisionCount: ds.Status.CollisionCount, Conditions: ds.Status.Conditions}
	var wait time.Duration
	for _, node := range s.nodes {
		run, _ := shouldRun(ds, node)
		ps := s.byNode[node.Name]
		if !run {
			if len(ps) > 0 {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if len(ps) == 0 {
			continue
		}
		st.CurrentNumberScheduled++
		p := ps[0] // the oldest, as Kubernetes counts
		if podReady(p) {
			st.NumberReady++
		}
		if ok, in := podAvailableIn(p, ds.Spec.MinReadySeconds, now); ok {
			st.NumberAvailable++
		} else if in > 0 && (wait == 0 || in < wait) {
			wait = in
		}
		if p.Labels[revisionHashLabel] == s.hash {
			st.UpdatedNumberScheduled++
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	if wait > 0 {
		r.q.AddAfter(key, wait+10*time.Millisecond)
	}
	if apiequality.Semantic.DeepEqual(ds.Status, st) {
		return nil
	}
	up := ds.DeepCopy()
	up.Status = st
	_, err := r.c.Update(ctx, up, true)
	return err
}
