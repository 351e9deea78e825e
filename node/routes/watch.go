package routes

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// Watch feeds m from the API until ctx ends: a list of the Nodes (a stale
// read from any server), then a watch from that list's version; when the
// watch ends it lists and watches again.
func Watch(ctx context.Context, c *client.Client, m *Manager, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		list, err := c.ListAll(ctx, api.Node, "", client.ListOptions{Stale: true})
		if err == nil {
			nodes := make([]*corev1.Node, 0, len(list.Items))
			for _, o := range list.Items {
				if n, ok := o.(*corev1.Node); ok {
					nodes = append(nodes, n)
				}
			}
			m.Replace(nodes)
			var w *client.Watcher
			w, err = c.Watch(ctx, api.Node, "", client.ListOptions{Stale: true, ResourceVersion: list.ResourceVersion})
			if err == nil {
				backoff = 100 * time.Millisecond
				for ev := range w.Events() {
					n, ok := ev.Object.(*corev1.Node)
					switch {
					case !ok:
					case ev.Type == client.Deleted:
						m.OnNodeDelete(n.Name)
					default:
						m.OnNode(n)
					}
				}
				err = w.Err()
				w.Stop()
			}
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("watching nodes for pod routes; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
