package ctrl

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// DefaultEventTTL is how long an Event stays after it last happened
// (kube-apiserver's --event-ttl).
const DefaultEventTTL = time.Hour

// pruneEvents deletes, on the leader, every Event that last happened more
// than ttl ago, so that a site that runs for months does not keep every
// event it ever had in its state. Kubernetes does this with an etcd lease
// that each write of the Event renews; here a sweep runs every tenth of
// the TTL (at most a minute apart), so an Event goes between ttl and
// ttl + period after its last occurrence. Each deletion is conditional on
// the Event's uid and resourceVersion: one that happened again meanwhile
// stays.
func pruneEvents(ctx context.Context, c Cluster, ttl time.Duration) {
	every(ctx, min(ttl/10, time.Minute), func() {
		expired := expiredEvents(c.View(), time.Now().Add(-ttl))
		if err := deleteRecords(ctx, c, expired, true); err != nil && ctx.Err() == nil {
			c.Logger().Warn("deleting expired events", "events", len(expired), "err", err)
		} else if len(expired) > 0 {
			c.Logger().Debug("deleted expired events", "events", len(expired), "ttl", ttl)
		}
	})
}

// expiredEvents are the Events that last happened before cutoff.
func expiredEvents(v *fsm.View, cutoff time.Time) []*fsm.Record {
	var out []*fsm.Record
	v.List(api.Event, "", func(r *fsm.Record) bool {
		if ev, ok := r.Obj.(*corev1.Event); ok && lastHappened(ev).Before(cutoff) {
			out = append(out, r)
		}
		return true
	})
	return out
}

// lastHappened is the latest of an Event's times: its creation, its last
// timestamp (core/v1 recorders), its event time and its series' last
// observation (events/v1 recorders).
func lastHappened(ev *corev1.Event) time.Time {
	t := ev.CreationTimestamp.Time
	for _, c := range []time.Time{ev.LastTimestamp.Time, ev.EventTime.Time} {
		if c.After(t) {
			t = c
		}
	}
	if ev.Series != nil && ev.Series.LastObservedTime.After(t) {
		t = ev.Series.LastObservedTime.Time
	}
	return t
}
