package sched

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// writer makes the scheduler's writes other than bindings: PodScheduled
// conditions and FailedScheduling Events for unschedulable pods, and the
// deletion of preemption victims. They run on a few goroutines so that the
// scheduling loop never waits for them (and the agent batches them into
// few Raft entries); only the latest job per object is kept.
type writer struct {
	c   Cluster
	log *slog.Logger

	mu      sync.Mutex
	jobs    map[string]func(context.Context)
	order   []string
	wake    chan struct{}
	stopped bool
	wg      sync.WaitGroup
}

const writerWorkers = 8

func newWriter(ctx context.Context, c Cluster, log *slog.Logger) *writer {
	w := &writer{c: c, log: log, jobs: map[string]func(context.Context){}, wake: make(chan struct{}, 1)}
	for range writerWorkers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.work(ctx)
		}()
	}
	return w
}

// submit queues job under key, replacing a queued job with the same key.
func (w *writer) submit(key string, job func(context.Context)) {
	w.mu.Lock()
	if _, ok := w.jobs[key]; !ok {
		w.order = append(w.order, key)
	}
	w.jobs[key] = job
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) next() func(context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.order) > 0 {
		key := w.order[0]
		w.order = w.order[1:]
		if job, ok := w.jobs[key]; ok {
			delete(w.jobs, key)
			if len(w.order) > 0 {
				select { // more work: wake another worker
				case w.wake <- struct{}{}:
				default:
				}
			}
			return job
		}
	}
	return nil
}

func (w *writer) work(ctx context.Context) {
	for {
		if job := w.next(); job != nil {
			job(ctx)
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
	}
}

// wait returns when every worker has stopped (after ctx ends).
func (w *writer) wait() { w.wg.Wait() }

// unschedulable records on a pending pod why it cannot be placed (and the
// node it preempted for), with an Event when the explanation is new.
func (w *writer) unschedulable(pod *corev1.Pod, message, nominated string) {
	ns, name, uid := pod.Namespace, pod.Name, pod.UID
	w.submit("status/"+ns+"/"+name, func(ctx context.Context) {
		for range 3 {
			if ctx.Err() != nil {
				return
			}
			rec := w.c.View().Get(api.Pod, ns, name)
			if rec == nil {
				return
			}
			cur := rec.Obj.(*corev1.Pod)
			if cur.UID != uid || !pending(cur) {
				return
			}
			old := podScheduledCondition(cur)
			if old != nil && old.Status == corev1.ConditionFalse && old.Reason == corev1.PodReasonUnschedulable &&
				old.Message == message && (nominated == "" || cur.Status.NominatedNodeName == nominated) {
				return
			}
			next := cur.DeepCopy()
			now := metav1.NewTime(time.Now().UTC().Truncate(time.Second))
			cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse,
				Reason: corev1.PodReasonUnschedulable, Message: message, LastTransitionTime: now}
			if old != nil && old.Status == corev1.ConditionFalse {
				cond.LastTransitionTime = old.LastTransitionTime
			}
			setCondition(&next.Status, cond)
			if nominated != "" {
				next.Status.NominatedNodeName = nominated
			}
			_, err := w.c.Update(ctx, next, true)
			if errors.Is(err, fsm.ErrConflict) {
				continue // changed meanwhile: look again
			}
			if err != nil {
				w.log.Debug("recording unschedulable pod", "pod", ns+"/"+name, "err", err)
				return
			}
			if old == nil || old.Message != message {
				w.event(ctx, cur, message, now)
			}
			return
		}
	})
}

// event creates a FailedScheduling Event. Its name derives from the pod
// and the message, so a new leader repeating it finds it exists instead of
// creating another.
func (w *writer) event(ctx context.Context, pod *corev1.Pod, message string, now metav1.Time) {
	h := fnv.New64a()
	h.Write([]byte(string(pod.UID) + "\x00" + message))
	name := pod.Name
	if len(name) > 200 {
		name = name[:200]
	}
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%016x", name, h.Sum64()), Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name,
			UID: pod.UID, ResourceVersion: pod.ResourceVersion},
		Type: corev1.EventTypeWarning, Reason: "FailedScheduling", Message: message,
		Source:         corev1.EventSource{Component: corev1.DefaultSchedulerName},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: corev1.DefaultSchedulerName,
	}
	api.Event.SetTypeMeta(ev)
	if _, err := w.c.Create(ctx, ev); err != nil && !errors.Is(err, fsm.ErrAlreadyExists) {
		w.log.Debug("creating scheduling event", "pod", pod.Namespace+"/"+pod.Name, "err", err)
	}
}

// evict deletes a preemption victim gracefully.
func (w *writer) evict(victim *corev1.Pod) {
	ns, name, uid := victim.Namespace, victim.Name, string(victim.UID)
	w.submit("delete/"+ns+"/"+name, func(ctx context.Context) {
		_, err := w.c.Propose(ctx, &fsm.Delete{Kind: api.Pod.Kind, Namespace: ns, Name: name, UID: uid, DeletionTime: time.Now().UnixNano()})
		if err != nil && !errors.Is(err, fsm.ErrNotFound) && !errors.Is(err, fsm.ErrConflict) {
			w.log.Debug("deleting preemption victim", "pod", ns+"/"+name, "err", err)
		}
	})
}

func podScheduledCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodScheduled {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func setCondition(st *corev1.PodStatus, c corev1.PodCondition) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}
