package ctrl

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// Source components of the Events controllers record (Kubernetes' names).
const (
	replicaSetComponent    = "replicaset-controller"
	deploymentComponent    = "deployment-controller"
	daemonSetComponent     = "daemonset-controller"
	nodeLifecycleComponent = "node-controller"
)

// recorder writes core/v1 Events about objects. Repeats of one event (same
// object, type, reason, message and source) are aggregated into one Event
// whose count and lastTimestamp grow: the Event's name is derived from
// those fields, so the aggregation survives a leader change without any
// memory. Events are written by one goroutine, off the reconcile path;
// when it falls behind, new events are dropped (as Kubernetes' recorder
// does) rather than slowing the controllers.
type recorder struct {
	c   Cluster
	log *slog.Logger
	ch  chan eventRequest
}

type eventRequest struct {
	kind                 *api.Kind
	obj                  api.Object
	typ, reason, msg, by string
	at                   time.Time
}

func newRecorder(c Cluster, log *slog.Logger) *recorder {
	return &recorder{c: c, log: log.With("controller", "events"), ch: make(chan eventRequest, 1024)}
}

// event records an event about obj (of kind k) from component by.
func (r *recorder) event(k *api.Kind, obj api.Object, typ, by, reason, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if len(msg) > 1024 {
		msg = msg[:1021] + "..."
	}
	select {
	case r.ch <- eventRequest{kind: k, obj: obj, typ: typ, reason: reason, msg: msg, by: by, at: time.Now()}:
	default:
		r.log.Debug("event dropped: recorder busy", "reason", reason, "object", obj.GetName())
	}
}

func (r *recorder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case req := <-r.ch:
			if err := r.write(ctx, req); err != nil && ctx.Err() == nil {
				r.log.Debug("writing event", "reason", req.reason, "object", req.obj.GetName(), "err", err)
			}
		}
	}
}

// eventName is stable for one (object, type, reason, message, source).
func eventName(req eventRequest) string {
	h := fnv.New64a()
	for _, s := range []string{string(req.obj.GetUID()), req.typ, req.reason, req.msg, req.by} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	name := req.obj.GetName()
	if len(name) > 200 {
		name = name[:200]
	}
	return fmt.Sprintf("%s.%016x", name, h.Sum64())
}

func (r *recorder) write(ctx context.Context, req eventRequest) error {
	ns := req.obj.GetNamespace()
	if ns == "" {
		ns = metav1.NamespaceDefault // Kubernetes files events of cluster-scoped objects there
	}
	name := eventName(req)
	now := metav1.NewTime(req.at.Truncate(time.Second))
	for range 3 {
		if rec := r.c.View().Get(api.Event, ns, name); rec != nil {
			ev := rec.Copy().(*corev1.Event)
			ev.Count++
			ev.LastTimestamp = now
			_, err := r.c.Update(ctx, ev, false)
			if errors.Is(err, fsm.ErrConflict) {
				continue
			}
			return err
		}
		ev := &corev1.Event{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			InvolvedObject: corev1.ObjectReference{Kind: req.kind.Kind, APIVersion: req.kind.APIVersion(),
				Namespace: req.obj.GetNamespace(), Name: req.obj.GetName(), UID: req.obj.GetUID(),
				ResourceVersion: req.obj.GetResourceVersion()},
			Reason: req.reason, Message: req.msg, Type: req.typ,
			Source:         corev1.EventSource{Component: req.by},
			FirstTimestamp: now, LastTimestamp: now, Count: 1,
			ReportingController: req.by,
		}
		api.Event.SetTypeMeta(ev)
		_, err := r.c.Create(ctx, ev)
		if errors.Is(err, fsm.ErrAlreadyExists) {
			continue
		}
		return err
	}
	return errRetry
}
