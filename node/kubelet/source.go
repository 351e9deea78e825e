package kubelet

import (
	"context"
	"errors"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// follow keeps the desired pods in step with the API: a list (which
// replaces the whole set: pods missing from it were deleted), then a watch
// resumed from the last version seen, across dropped connections and
// server failures; when the servers no longer hold that history it lists
// again. Reads are stale (any server), but never older than what the
// kubelet already knows: a lagging server must not make it stop pods.
func (k *Kubelet) follow(ctx context.Context, known uint64, listed bool) {
	backoff := newRetry()
	for ctx.Err() == nil {
		if !listed {
			pods, rv, err := k.cfg.Cluster.ListPods(ctx, k.cfg.NodeName, formatRV(known))
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				k.setOnline(false, err)
				var se apierrors.APIStatus
				if errors.As(err, &se) && backoff.failures >= 3 && known > 0 {
					// The servers answer but never reach that version (a
					// cluster restored from an older backup): trust them.
					k.log.Warn("the API stays behind the pods this node knows; listing without a minimum version", "known", known, "err", err)
					known = 0
				}
				backoff.wait(ctx)
				continue
			}
			backoff.reset()
			k.setOnline(true, nil)
			k.replacePods(pods, parseRV(rv))
			k.syncedOnce.Do(func() { close(k.synced) })
			known = max(known, parseRV(rv))
		}
		listed = false
		if gone := k.watch(ctx, &known, backoff); !gone {
			return
		}
	}
}

func formatRV(rv uint64) string {
	if rv == 0 {
		return ""
	}
	return strconv.FormatUint(rv, 10)
}

// watch follows changes after *known until the history is gone (true) or
// ctx ends (false).
func (k *Kubelet) watch(ctx context.Context, known *uint64, backoff *retry) bool {
	// atKnown: an object event at *known was delivered. Changes made by one
	// batched Raft entry share its version, so a resumed watch starts just
	// before it; replays are harmless (workers ignore older versions).
	atKnown := false
	for ctx.Err() == nil {
		from := *known
		if atKnown && from > 0 {
			from--
		}
		err := k.cfg.Cluster.WatchPods(ctx, k.cfg.NodeName, strconv.FormatUint(from, 10), func(ev WatchEvent) {
			k.setOnline(true, nil)
			backoff.reset()
			if rv := parseRV(ev.RV); rv > *known {
				*known, atKnown = rv, ev.Type != EventBookmark
			}
			switch ev.Type {
			case EventAdded, EventModified:
				k.setPod(ev.Pod)
			case EventDeleted:
				k.removePod(ev.Pod.UID)
			}
		})
		if ctx.Err() != nil {
			return false
		}
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			return true
		}
		k.setOnline(false, err)
		backoff.wait(ctx)
	}
	return false
}

// replacePods makes the listed pods the desired set (list read at rv).
func (k *Kubelet) replacePods(pods []*corev1.Pod, rv uint64) {
	seen := make(map[types.UID]bool, len(pods))
	keep := map[string]bool{}
	for _, p := range pods {
		seen[p.UID] = true
		k.setPod(p)
		for _, ref := range objectRefs(p) {
			keep[ref] = true
		}
	}
	k.mu.Lock()
	var gone []*podWorker
	for uid, w := range k.workers {
		if !seen[uid] && parseRV(w.current().ResourceVersion) <= rv {
			gone = append(gone, w)
		}
	}
	k.mu.Unlock()
	for _, w := range gone {
		w.remove()
	}
	k.store.pruneObjects(keep)
}

// objectRefs names the ConfigMaps and Secrets a pod uses, as the store
// names their copies.
func objectRefs(p *corev1.Pod) []string {
	var out []string
	cm := func(n string) { out = append(out, "configmap_"+p.Namespace+"_"+n) }
	sec := func(n string) { out = append(out, "secret_"+p.Namespace+"_"+n) }
	for _, v := range p.Spec.Volumes {
		if v.ConfigMap != nil {
			cm(v.ConfigMap.Name)
		}
		if v.Secret != nil {
			sec(v.Secret.SecretName)
		}
	}
	for _, list := range [][]corev1.Container{p.Spec.InitContainers, p.Spec.Containers} {
		for _, c := range list {
			for _, e := range c.EnvFrom {
				if e.ConfigMapRef != nil {
					cm(e.ConfigMapRef.Name)
				}
				if e.SecretRef != nil {
					sec(e.SecretRef.Name)
				}
			}
			for _, e := range c.Env {
				if f := e.ValueFrom; f != nil && f.ConfigMapKeyRef != nil {
					cm(f.ConfigMapKeyRef.Name)
				} else if f != nil && f.SecretKeyRef != nil {
					sec(f.SecretKeyRef.Name)
				}
			}
		}
	}
	return out
}

func (k *Kubelet) setOnline(on bool, err error) {
	if k.online.Swap(on) != on {
		if on {
			k.log.Info("following the API")
			k.status.retryNow()
			k.wakeAll() // deletions waiting for a confirmation
		} else {
			k.log.Warn("the API cannot be reached; running the pods this node knows", "err", err)
		}
	}
}

// retry is a capped exponential wait between attempts to reach the API.
type retry struct {
	delay    time.Duration
	failures int
}

func newRetry() *retry { return &retry{delay: 100 * time.Millisecond} }

func (r *retry) reset() { r.delay, r.failures = 100*time.Millisecond, 0 }

func (r *retry) wait(ctx context.Context) {
	r.failures++
	t := time.NewTimer(r.delay)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	r.delay = min(2*r.delay, 5*time.Second)
}
