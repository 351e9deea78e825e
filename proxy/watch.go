package proxy

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// Watch feeds p from the API until ctx ends. For Services and for Endpoints
// it lists everything (a stale read from whichever server answers), hands
// the list to Replace*, and then follows a watch from that list's version;
// if the watch ends it lists and watches again. The Proxier's first sync
// waits for both lists.
func Watch(ctx context.Context, c *client.Client, p *Proxier, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		client.Follow(ctx, c, api.Service, log, func(objs []api.Object) {
			list := make([]*corev1.Service, 0, len(objs))
			for _, o := range objs {
				if s, ok := o.(*corev1.Service); ok {
					list = append(list, s)
				}
			}
			p.ReplaceServices(list)
		}, func(ev client.Event) {
			s, ok := ev.Object.(*corev1.Service)
			switch {
			case !ok:
			case ev.Type == client.Deleted:
				p.OnServiceDelete(s.Namespace, s.Name)
			default:
				p.OnService(s)
			}
		})
	}()
	client.Follow(ctx, c, api.Endpoints, log, func(objs []api.Object) {
		list := make([]*corev1.Endpoints, 0, len(objs))
		for _, o := range objs {
			if e, ok := o.(*corev1.Endpoints); ok {
				list = append(list, e)
			}
		}
		p.ReplaceEndpoints(list)
	}, func(ev client.Event) {
		e, ok := ev.Object.(*corev1.Endpoints)
		switch {
		case !ok:
		case ev.Type == client.Deleted:
			p.OnEndpointsDelete(e.Namespace, e.Name)
		default:
			p.OnEndpoints(e)
		}
	})
	<-done
}
