package kubelet

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/node/runtime"
)

// terminate ends a pod that is being deleted (deletionTimestamp set) or
// is gone from the API: its containers get SIGTERM and the grace period,
// then everything it had on the node is removed, and a graceful deletion
// is confirmed to the API so the object goes away. Until the confirmation
// succeeds (the API may be unreachable) the pod stays recorded and the
// worker keeps trying.
func (w *podWorker) terminate(ctx context.Context, pod *corev1.Pod, removed bool) (time.Duration, bool) {
	w.refresh(ctx)
	if err := w.stopAll(ctx, podGrace(pod)); err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		w.log.Warn("stopping the pod's containers", "err", err)
		return w.k.cfg.RetryPeriod, false
	}
	if !removed {
		w.report(pod, true)
	}
	if err := w.removeAll(ctx, pod); err != nil {
		if ctx.Err() != nil {
			return 0, false
		}
		w.log.Warn("removing the pod's containers", "err", err)
		return w.k.cfg.RetryPeriod, false
	}
	if !removed && pod.DeletionTimestamp != nil {
		err := w.k.confirmDeletion(ctx, pod)
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			if ctx.Err() != nil {
				return 0, false
			}
			w.confirmWait = min(max(2*w.confirmWait, time.Second), 30*time.Second)
			w.log.Info("cannot confirm the pod's deletion yet", "err", err, "retry", w.confirmWait)
			return w.confirmWait, false
		}
	}
	w.k.status.forget(w.uid)
	if err := w.k.store.deletePod(w.uid); err != nil {
		w.log.Warn("forgetting the pod", "err", err)
	}
	w.log.Info("pod removed from the node")
	return 0, true
}

// removeAll removes every container, sandbox and volume of the pod.
func (w *podWorker) removeAll(ctx context.Context, pod *corev1.Pod) error {
	var errs []error
	for _, cs := range w.ctrs {
		for _, id := range append(cs.garbage, ids(cs.cur, cs.prev)...) {
			if err := w.k.rt.RemoveContainer(ctx, id); err != nil {
				errs = append(errs, err)
				continue
			}
			w.k.untrackContainer(id)
		}
		cs.garbage, cs.cur, cs.prev = nil, nil, nil
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	sbs := w.staleSandboxes
	if w.sandbox != nil {
		sbs = append(sbs, w.sandbox.ID)
	}
	for _, id := range sbs {
		if err := w.k.rt.RemoveSandbox(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	w.sandbox, w.staleSandboxes = nil, nil
	return w.k.tearDownVolumes(pod)
}

func ids(list ...*runtime.ContainerStatus) []string {
	var out []string
	for _, c := range list {
		if c != nil {
			out = append(out, c.ID)
		}
	}
	return out
}

// confirmDeletion deletes the pod with grace 0 now that it has stopped.
func (k *Kubelet) confirmDeletion(ctx context.Context, pod *corev1.Pod) error {
	if k.cfg.Cluster == nil {
		return errors.New("no API configured")
	}
	cctx, cancel := context.WithTimeout(ctx, k.cfg.APITimeout)
	defer cancel()
	return k.cfg.Cluster.ConfirmPodDeletion(cctx, pod.Namespace, pod.Name, string(pod.UID))
}
