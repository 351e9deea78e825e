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

// unschedulable records on a pending pod why it cannot be placed, with an
// Event when the explanation is new.
func (w *writer) unschedulable(pod *corev1.Pod, message string) {
	w.submit("status/"+pod.Namespace+"/"+pod.Name, func(ctx context.Context) {
		w.record(ctx, pod, message, "")
	})
}

// preempt records why the pod cannot be placed and the node it preempts
// for, then deletes the victims. In this order, so that the pod's next
// attempt sees the nomination and waits for the victims to go instead of
// choosing more; and only if the pod still waits (a pod that was deleted,
// or bound elsewhere meanwhile, needs no victims).
func (w *writer) preempt(pod *corev1.Pod, message, node string, victims []*PodInfo) {
	w.submit("status/"+pod.Namespace+"/"+pod.Name, func(ctx context.Context) {
		if !w.record(ctx, pod, message, node) {
			return
		}
		for _, v := range victims {
			w.evict(ctx, v.Pod)
		}
	})
}

// record sets the pod's PodScheduled=False condition (and its nominated
// node) unless they already say so. It reports whether the pod is still
// pending with them recorded.
func (w *writer) record(ctx context.Context, pod *corev1.Pod, message, nominated string) bool {
	ns, name, uid := pod.Namespace, pod.Name, pod.UID
	for range 3 {
		if ctx.Err() != nil {
			return false
		}
		rec := w.c.View().Get(api.Pod, ns, name)
		if rec == nil {
			return false
		}
		cur := rec.Obj.(*corev1.Pod)
		if cur.UID != uid || !pending(cur) {
			return false
		}
		old := podScheduledCondition(cur)
		if old != nil && old.Status == corev1.ConditionFalse && old.Reason == corev1.PodReasonUnschedulable &&
			old.Message == message && (nominated == "" || cur.Status.NominatedNodeName == nominated) {
			return true
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
			return false
		}
		if old == nil || old.Message != message {
			w.event(ctx, cur, message, now)
		}
		return true
	}
	return false
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

// evict deletes a preemption victim gracefully (unless it was replaced).
func (w *writer) evict(ctx context.Context, victim *corev1.Pod) {
	_, err := w.c.Propose(ctx, &fsm.Delete{Kind: api.Pod.Kind, Namespace: victim.Namespace, Name: victim.Name,
		UID: string(victim.UID), DeletionTime: time.Now().UnixNano()})
	if err != nil && !errors.Is(err, fsm.ErrNotFound) && !errors.Is(err, fsm.ErrConflict) {
		w.log.Debug("deleting preemption victim", "pod", victim.Namespace+"/"+victim.Name, "err", err)
	}
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
