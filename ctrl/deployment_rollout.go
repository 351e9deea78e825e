package ctrl

import (
	"context"
	"errors"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// The strategies. Each reconcile takes one step from one view and
// returns; the writes it makes bring the Deployment back (through its
// ReplicaSets' and pods' events) for the next step.

// rolloutRolling is the RollingUpdate strategy: scale the new ReplicaSet
// up within maxSurge, then old ones down within maxUnavailable.
func (d *deployments) rolloutRolling(ctx context.Context, s *rollout) error {
	if err := d.ensureNewRS(ctx, s, true, s.newRSReplicas); err != nil {
		return err
	}
	if want := s.newRSReplicas(); want != s.spec(s.newRS) {
		return d.scale(ctx, s, s.newRS, want)
	}
	scaled, err := d.scaleDownOld(ctx, s)
	if err != nil || scaled {
		return err
	}
	if s.complete() {
		return d.cleanup(ctx, s)
	}
	return nil
}

// newRSReplicas is Kubernetes' NewRSNewReplicas for RollingUpdate, with
// pods that exist beyond an old ReplicaSet's spec counted.
func (s *rollout) newRSReplicas() int32 {
	replicas, cur := s.replicas(), s.spec(s.newRS)
	if cur >= replicas {
		return replicas
	}
	surge, _ := fenceposts(s.d)
	var total int32
	for _, rs := range s.all() {
		total += s.count(rs)
	}
	if total >= replicas+surge {
		return cur
	}
	return cur + min(replicas+surge-total, replicas-cur)
}

// scaleDownOld is Kubernetes' reconcileOldReplicaSets: first old pods
// that are not available go (they cost no availability), then available
// ones while more than replicas - maxUnavailable stay available.
func (d *deployments) scaleDownOld(ctx context.Context, s *rollout) (bool, error) {
	var oldCount int32
	for _, rs := range s.old {
		oldCount += s.count(rs)
	}
	if oldCount == 0 {
		return false, nil
	}
	var allSpec int32
	for _, rs := range s.all() {
		allSpec += s.spec(rs)
	}
	minAvailable := s.replicas() - maxUnavailable(s.d)
	newUnavailable := s.spec(s.newRS) - s.available(s.newRS)
	maxScaledDown := allSpec - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false, nil
	}
	scaled := false
	var cleaned int32
	for _, rs := range s.old {
		if cleaned >= maxScaledDown {
			break
		}
		spec, avail := s.spec(rs), s.available(rs)
		if spec == 0 || spec == avail {
			continue
		}
		down := min(maxScaledDown-cleaned, spec-avail)
		if err := d.scale(ctx, s, rs, spec-down); err != nil {
			return scaled, err
		}
		cleaned += down
		scaled = true
	}
	var available int32
	for _, rs := range s.all() {
		available += s.available(rs)
	}
	if available <= minAvailable {
		return scaled, nil
	}
	budget := available - minAvailable
	for _, rs := range s.old {
		if budget <= 0 {
			break
		}
		spec := s.spec(rs)
		if spec == 0 {
			continue
		}
		down := min(spec, budget)
		if err := d.scale(ctx, s, rs, spec-down); err != nil {
			return scaled, err
		}
		budget -= down
		scaled = true
	}
	return scaled, nil
}

// rolloutRecreate is the Recreate strategy: old ReplicaSets to zero, wait
// until none of their pods runs (terminating ones included), then the new
// ReplicaSet up to replicas.
func (d *deployments) rolloutRecreate(ctx context.Context, s *rollout) error {
	if err := d.ensureNewRS(ctx, s, false, nil); err != nil {
		return err
	}
	scaled := false
	for _, rs := range s.old {
		if s.spec(rs) != 0 {
			if err := d.scale(ctx, s, rs, 0); err != nil {
				return err
			}
			scaled = true
		}
	}
	if scaled || s.oldPodsRunning() {
		return nil
	}
	if err := d.ensureNewRS(ctx, s, true, s.replicas); err != nil {
		return err
	}
	if s.spec(s.newRS) != s.replicas() {
		return d.scale(ctx, s, s.newRS, s.replicas())
	}
	if s.complete() {
		return d.cleanup(ctx, s)
	}
	return nil
}

func (s *rollout) oldPodsRunning() bool {
	for _, rs := range s.old {
		for _, p := range s.pods[rs.UID] {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				return true
			}
		}
	}
	return false
}

// syncPaused only scales: a paused Deployment starts no rollout.
func (d *deployments) syncPaused(ctx context.Context, s *rollout) error {
	if err := d.ensureNewRS(ctx, s, false, nil); err != nil {
		return err
	}
	if err := d.scaleProportionally(ctx, s); err != nil {
		return err
	}
	return d.cleanup(ctx, s)
}

// scaleProportionally applies a change of spec.replicas to a paused
// Deployment. With one active ReplicaSet (or none: the newest) it gets
// replicas; with several mid-rollout, the difference to replicas +
// maxSurge is shared in proportion to their sizes, the rounding rest
// going to the largest (Kubernetes does the same, reading the sizes it
// last set from annotations).
func (d *deployments) scaleProportionally(ctx context.Context, s *rollout) error {
	var active []*appsv1.ReplicaSet
	for _, rs := range s.all() {
		if s.spec(rs) > 0 {
			active = append(active, rs)
		}
	}
	if len(active) <= 1 {
		target := s.newRS
		if len(active) == 1 {
			target = active[0]
		} else if target == nil && len(s.old) > 0 {
			target = s.old[len(s.old)-1]
		}
		if target == nil {
			return nil
		}
		return d.scale(ctx, s, target, s.replicas())
	}
	allowed := int32(0) // a Deployment scaled to zero gets no surge
	if s.replicas() > 0 {
		surge, _ := fenceposts(s.d)
		allowed = s.replicas() + surge
	}
	var total int32
	for _, rs := range active {
		total += s.spec(rs)
	}
	delta := allowed - total
	if delta == 0 || total == 0 {
		return nil
	}
	// Largest first; on a tie the newer when growing, the older when
	// shrinking.
	sort.SliceStable(active, func(i, j int) bool {
		a, b := active[i], active[j]
		if s.spec(a) != s.spec(b) {
			return s.spec(a) > s.spec(b)
		}
		if delta > 0 {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	})
	want := make([]int32, len(active))
	var given int32
	for i, rs := range active {
		share := s.spec(rs) * delta / total
		want[i] = s.spec(rs) + share
		given += share
	}
	want[0] += delta - given
	for i, rs := range active {
		if err := d.scale(ctx, s, rs, max(want[i], 0)); err != nil {
			return err
		}
	}
	return nil
}

// complete: every replica updated and available, and no other pod.
func (s *rollout) complete() bool {
	if s.newRS == nil {
		return s.replicas() == 0 && s.totalActive() == 0
	}
	return s.active(s.newRS) == s.replicas() && s.totalActive() == s.replicas() && s.availablePods(s.newRS) == s.replicas()
}

func (s *rollout) totalActive() int32 {
	var n int32
	for _, rs := range s.all() {
		n += s.active(rs)
	}
	return n
}

// cleanup deletes the oldest ReplicaSets scaled to zero and without pods
// beyond spec.revisionHistoryLimit.
func (d *deployments) cleanup(ctx context.Context, s *rollout) error {
	limit := 10
	if l := s.d.Spec.RevisionHistoryLimit; l != nil {
		limit = int(*l)
	}
	var idle []*appsv1.ReplicaSet
	for _, rs := range s.old {
		if s.spec(rs) == 0 && len(s.pods[rs.UID]) == 0 && rs.DeletionTimestamp == nil {
			idle = append(idle, rs)
		}
	}
	if len(idle) <= limit {
		return nil
	}
	sort.SliceStable(idle, func(i, j int) bool { return revision(idle[i]) < revision(idle[j]) })
	for _, rs := range idle[:len(idle)-limit] {
		_, err := d.c.Delete(ctx, api.ReplicaSet, rs.Namespace, rs.Name, agent.DeleteOptions{UID: string(rs.UID)})
		if err != nil && !errors.Is(err, fsm.ErrNotFound) && !errors.Is(err, fsm.ErrConflict) {
			return err
		}
	}
	return nil
}
