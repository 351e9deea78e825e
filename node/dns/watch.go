package dns

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// Watch feeds s from the API until ctx ends, as the proxy is fed: for
// Services and for Endpoints it lists everything (a stale read from
// whichever server answers), hands the list to Replace*, and then follows a
// watch from that list's version; if the watch ends it lists and watches
// again. The zone is answered once both lists are in.
func Watch(ctx context.Context, c *client.Client, s *Store, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		client.Follow(ctx, c, api.Service, log, func(objs []api.Object) {
			list := make([]*corev1.Service, 0, len(objs))
			for _, o := range objs {
				if svc, ok := o.(*corev1.Service); ok {
					list = append(list, svc)
				}
			}
			s.ReplaceServices(list)
		}, func(ev client.Event) {
			svc, ok := ev.Object.(*corev1.Service)
			switch {
			case !ok:
			case ev.Type == client.Deleted:
				s.OnServiceDelete(svc.Namespace, svc.Name)
			default:
				s.OnService(svc)
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
		s.ReplaceEndpoints(list)
	}, func(ev client.Event) {
		e, ok := ev.Object.(*corev1.Endpoints)
		switch {
		case !ok:
		case ev.Type == client.Deleted:
			s.OnEndpointsDelete(e.Namespace, e.Name)
		default:
			s.OnEndpoints(e)
		}
	})
	<-done
}

// follow lists kind k and follows a watch from the list, again and again
// until ctx ends, backing off while the servers cannot be reached.
