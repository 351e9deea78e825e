package kubelet

import (
	"context"
	"os"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/node/runtime"
)

// adoptedPod is what the runtime runs for one pod UID when the kubelet
// starts: a previous agent process created it, and the pod's worker takes
// it over instead of starting anew.
type adoptedPod struct {
	sandboxes  []runtime.Sandbox
	containers []runtime.ContainerStatus
}

// adoptRuntime lists the runtime's sandboxes and containers by pod UID.
func (k *Kubelet) adoptRuntime(ctx context.Context) error {
	sbs, err := k.rt.ListSandboxes(ctx)
	if err != nil {
		return err
	}
	ctrs, err := k.rt.ListContainers(ctx)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	get := func(uid string) *adoptedPod {
		a := k.adopted[types.UID(uid)]
		if a == nil {
			a = &adoptedPod{}
			k.adopted[types.UID(uid)] = a
		}
		return a
	}
	for _, sb := range sbs {
		a := get(sb.Config.UID)
		a.sandboxes = append(a.sandboxes, sb)
	}
	for _, c := range ctrs {
		if c.PodUID == "" {
			continue // not a pod's container: not ours to touch
		}
		a := get(c.PodUID)
		a.containers = append(a.containers, c)
	}
	return nil
}

// cleanOrphans stops and removes what runs for pods the kubelet does not
// want (their records were removed before their containers were), and
// pod directories left without a record. Call it once every desired pod
// has its worker: what is still unadopted then is an orphan.
func (k *Kubelet) cleanOrphans() {
	k.mu.Lock()
	var orphans []*corev1.Pod
	for uid, a := range k.adopted {
		p := orphanPod(uid, a)
		p.Spec.NodeName = k.cfg.NodeName
		orphans = append(orphans, p)
	}
	k.mu.Unlock()
	for _, p := range orphans {
		k.log.Info("removing containers of a pod this node no longer runs", "pod", podKey(p), "uid", p.UID)
		k.setPod(p)
		k.removePod(p.UID)
	}
	want := k.desiredUIDs()
	for _, uid := range k.store.podDirs() {
		if want[uid] {
			continue
		}
		if _, err := os.Stat(k.store.podDir(uid) + "/pod.json"); err == nil {
			continue
		}
		if err := unmountUnder(k.store.podDir(uid)); err != nil {
			k.log.Warn("unmounting a stale pod directory", "uid", uid, "err", err)
			continue
		}
		k.store.deletePod(uid)
	}
}

// orphanPod describes an orphan well enough for its worker to stop it.
func orphanPod(uid types.UID, a *adoptedPod) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: uid}}
	for _, c := range a.containers {
		p.Name, p.Namespace = c.Labels[runtime.LabelPodName], c.Labels[runtime.LabelPodNS]
	}
	for _, sb := range a.sandboxes {
		p.Name, p.Namespace = sb.Config.Name, sb.Config.Namespace
	}
	grace := int64(2)
	p.Spec.TerminationGracePeriodSeconds = &grace
	return p
}

// adopt takes over what a previous process left for this worker's pod:
// the newest sandbox, and per container name the newest attempt (current)
// and the one before (for lastState and logs --previous). Older attempts
// and other sandboxes are removed by the next sync.
func (w *podWorker) adopt(a *adoptedPod) {
	if a == nil {
		return
	}
	sort.Slice(a.sandboxes, func(i, j int) bool { return a.sandboxes[i].CreatedAt.After(a.sandboxes[j].CreatedAt) })
	for i := range a.sandboxes {
		sb := a.sandboxes[i]
		if i == 0 {
			w.sandbox = &sb
		} else {
			w.staleSandboxes = append(w.staleSandboxes, sb.ID)
		}
	}
	sort.Slice(a.containers, func(i, j int) bool {
		ci, cj := a.containers[i], a.containers[j]
		if ci.Attempt != cj.Attempt {
			return ci.Attempt > cj.Attempt
		}
		return ci.CreatedAt.After(cj.CreatedAt)
	})
	for i := range a.containers {
		c := a.containers[i]
		cs := w.ctr(c.Name)
		switch {
		case cs.cur == nil:
			cs.cur = &c
			cs.nextAttempt = c.Attempt + 1
		case cs.prev == nil:
			cs.prev = &c
		default:
			cs.garbage = append(cs.garbage, c.ID)
		}
	}
	w.adopted = len(a.containers) > 0
	w.publish()
}
