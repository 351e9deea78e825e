package client

import (
	"context"
	"log/slog"
	"time"

	"orch.dev/orch/api"
)

// Follow keeps a consumer in step with every object of kind k until ctx
// ends: it lists them (a stale read from whichever server answers) and
// hands the list to replace, then delivers the changes after that list to
// apply; when the watch ends it lists and watches again, with backoff.
// Node agents (proxy, DNS, routes) use it to mirror cluster state.
func Follow(ctx context.Context, c *Client, k *api.Kind, log *slog.Logger, replace func([]api.Object), apply func(Event)) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		list, err := c.ListAll(ctx, k, "", ListOptions{Stale: true})
		if err == nil {
			replace(list.Items)
			var w *Watcher
			w, err = c.Watch(ctx, k, "", ListOptions{Stale: true, ResourceVersion: list.ResourceVersion})
			if err == nil {
				backoff = 100 * time.Millisecond
				for ev := range w.Events() {
					apply(ev)
				}
				err = w.Err()
				w.Stop()
			}
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("watch ended; listing again", "kind", k.Kind, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
