package routes

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// Watch feeds m from the API until ctx ends: a list of the Nodes (a stale
// read from any server), then a watch from that list's version, again
// after every end of the watch.
func Watch(ctx context.Context, c *client.Client, m *Manager, log *slog.Logger) {
	client.Follow(ctx, c, api.Node, log, func(objs []api.Object) {
		nodes := make([]*corev1.Node, 0, len(objs))
		for _, o := range objs {
			if n, ok := o.(*corev1.Node); ok {
				nodes = append(nodes, n)
			}
		}
		m.Replace(nodes)
	}, func(ev client.Event) {
		n, ok := ev.Object.(*corev1.Node)
		switch {
		case !ok:
		case ev.Type == client.Deleted:
			m.OnNodeDelete(n.Name)
		default:
			m.OnNode(n)
		}
	})
}
