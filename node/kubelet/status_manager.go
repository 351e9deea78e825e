package kubelet

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// statusManager writes pod statuses to the API. It keeps only the latest
// status of each pod: however often a pod changes while a write is queued
// or in flight, it is written once more at most. A bounded number of
// writes run at once; the API's proposer batches concurrent writes into
// one Raft entry. A failed write is retried (the newest status) with
// backoff until it succeeds, the pod is gone, or a newer status replaces it.
type statusManager struct {
	cl      Cluster
	writers int
	log     *slog.Logger

	mu       sync.Mutex
	pending  map[types.UID]*corev1.Pod // latest status not yet written
	queue    []types.UID               // pods with a pending status, oldest first
	inflight map[types.UID]bool
	failures map[types.UID]int
	retrying map[types.UID]bool // failed, waiting for their retry
	wake     chan struct{}

	writes atomic.Int64 // successful writes, for tests and metrics
}

func newStatusManager(cl Cluster, writers int, log *slog.Logger) *statusManager {
	return &statusManager{cl: cl, writers: writers, log: log, pending: map[types.UID]*corev1.Pod{},
		inflight: map[types.UID]bool{}, failures: map[types.UID]int{}, retrying: map[types.UID]bool{}, wake: make(chan struct{}, 1)}
}

// set queues pod (name, namespace, uid and status) to be written.
func (m *statusManager) set(pod *corev1.Pod) {
	if m.cl == nil {
		return
	}
	m.mu.Lock()
	if _, queued := m.pending[pod.UID]; !queued && !m.inflight[pod.UID] {
		m.queue = append(m.queue, pod.UID)
	}
	m.pending[pod.UID] = pod
	m.mu.Unlock()
	m.signal()
}

// forget drops what is queued for a pod that went away.
func (m *statusManager) forget(uid types.UID) {
	m.mu.Lock()
	delete(m.pending, uid)
	delete(m.failures, uid)
	delete(m.retrying, uid)
	m.mu.Unlock()
}

// retryNow retries every failed write at once (the API is back).
func (m *statusManager) retryNow() {
	m.mu.Lock()
	for uid := range m.retrying {
		m.queue = append(m.queue, uid)
	}
	clear(m.retrying)
	m.mu.Unlock()
	m.signal()
}

func (m *statusManager) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// Writes is how many status writes succeeded.
func (m *statusManager) Writes() int64 { return m.writes.Load() }

func (m *statusManager) run(ctx context.Context) {
	if m.cl == nil {
		return
	}
	var wg sync.WaitGroup
	for range m.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				uid, pod := m.next(ctx)
				if pod == nil {
					return
				}
				m.write(ctx, uid, pod)
			}
		}()
	}
	wg.Wait()
}

// next takes the oldest queued pod not being written, waiting for one.
func (m *statusManager) next(ctx context.Context) (types.UID, *corev1.Pod) {
	for {
		m.mu.Lock()
		uid, pod := m.take()
		more := len(m.queue) > 0
		m.mu.Unlock()
		if pod != nil {
			if more {
				m.signal() // another writer may take the next one
			}
			return uid, pod
		}
		select {
		case <-ctx.Done():
			return "", nil
		case <-m.wake:
		}
	}
}

func (m *statusManager) take() (types.UID, *corev1.Pod) {
	for i := 0; i < len(m.queue); {
		uid := m.queue[i]
		if m.inflight[uid] {
			i++
			continue
		}
		m.queue = append(m.queue[:i:i], m.queue[i+1:]...)
		pod := m.pending[uid]
		if pod == nil {
			continue // forgotten
		}
		delete(m.pending, uid)
		m.inflight[uid] = true
		return uid, pod
	}
	return "", nil
}

func (m *statusManager) write(ctx context.Context, uid types.UID, pod *corev1.Pod) {
	err := m.cl.UpdatePodStatus(ctx, pod)
	m.mu.Lock()
	delete(m.inflight, uid)
	_, newer := m.pending[uid]
	switch {
	case err == nil:
		delete(m.failures, uid)
		m.writes.Add(1)
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		// The pod is gone, or the name now belongs to another pod.
		delete(m.failures, uid)
	case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err):
		m.log.Error("the API refused a pod status", "pod", podKey(pod), "err", err)
		delete(m.failures, uid)
	case ctx.Err() != nil:
	default:
		m.failures[uid]++
		if !newer {
			m.pending[uid] = pod
			newer = true
		}
		n := m.failures[uid]
		delay := min(time.Duration(1<<min(n-1, 5))*time.Second, 30*time.Second)
		m.retrying[uid] = true
		m.mu.Unlock()
		if n == 1 {
			m.log.Info("cannot write pod status yet", "pod", podKey(pod), "err", err)
		}
		// Wait before the pod is retried; other pods go on meanwhile.
		time.AfterFunc(delay, func() {
			m.mu.Lock()
			if m.retrying[uid] {
				delete(m.retrying, uid)
				m.queue = append(m.queue, uid)
			}
			m.mu.Unlock()
			m.signal()
		})
		return
	}
	if newer {
		m.queue = append(m.queue, uid)
	}
	m.mu.Unlock()
	if newer {
		m.signal()
	}
}
