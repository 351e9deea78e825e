package sched

import (
	"cmp"
	"container/heap"
	"slices"
	"time"
)

// Backoff of a pod that failed: 10ms, doubling per failed attempt, at most
// maxBackoff. It only delays pods that a cluster change or a refused
// binding puts back; the first attempt is immediate.
const (
	initialBackoff = 10 * time.Millisecond
	maxBackoff     = time.Second
)

type queueState uint8

const (
	stateActive queueState = iota
	stateParked
	stateBackoff
	stateInFlight // popped, being scheduled or bound
)

type queueEntry struct {
	pod      *PodInfo
	state    queueState
	seq      uint64 // arrival order: FIFO among pods created in the same instant
	attempts int
	failedAt time.Time
	readyAt  time.Time // in backoff: when it may go back
	events   EventMask // parked: the changes that wake it
	popCycle uint64    // moveCycle when popped
	index    int       // position in its heap
}

// Queue orders pending pods: higher spec.priority first; at equal priority,
// round-robin between namespaces (one namespace's burst cannot starve
// another's pods); within a namespace, oldest first. Pods that fit nowhere
// are parked until a cluster change that may help them (never by a timer);
// pods whose binding was refused come back after a short backoff.
//
// Times are passed in, so that tests need no clock. Not safe for concurrent
// use.
type Queue struct {
	entries map[string]*queueEntry
	parked  map[string]*queueEntry
	levels  map[int32]*priorityLevel
	prios   []int32 // the levels' priorities, highest first
	backoff backoffHeap
	seq     uint64
	// moveCycle counts cluster changes, so that a pod that fails after a
	// change it could not see is retried instead of parked.
	moveCycle uint64
	active    int
}

// priorityLevel holds the active pods of one priority.
type priorityLevel struct {
	ring []string // namespaces with pods, in round-robin order
	next int
	byNS map[string]*fifo
}

// NewQueue returns an empty queue.
func NewQueue() *Queue {
	return &Queue{entries: map[string]*queueEntry{}, parked: map[string]*queueEntry{}, levels: map[int32]*priorityLevel{}, moveCycle: 1}
}

// Add queues a new pending pod, or updates a queued one: a parked pod whose
// spec or labels changed (changed) is retried at once.
func (q *Queue) Add(p *PodInfo, changed bool) {
	e := q.entries[p.Key]
	if e == nil {
		q.seq++
		e = &queueEntry{pod: p, seq: q.seq}
		q.entries[p.Key] = e
		q.push(e)
		return
	}
	if e.state == stateActive {
		// Its place (priority, namespace) may have changed: re-insert.
		q.remove(e)
		e.pod = p
		q.push(e)
		return
	}
	e.pod = p
	if changed && e.state == stateParked {
		delete(q.parked, e.pod.Key)
		q.push(e)
	}
	if changed && e.state == stateInFlight {
		e.popCycle = 0 // fail -> retry
	}
}

// Delete forgets a pod (deleted, bound, or no longer pending).
func (q *Queue) Delete(key string) {
	e := q.entries[key]
	if e == nil {
		return
	}
	q.remove(e)
	delete(q.entries, key)
}

// Has reports whether the queue knows the pod (in any state).
func (q *Queue) Has(key string) bool { return q.entries[key] != nil }

// Len is the number of pods ready to be scheduled.
func (q *Queue) Len() int { return q.active }

// Parked is the number of pods waiting for a cluster change.
func (q *Queue) Parked() int { return len(q.parked) }

// Pop takes up to max pods in scheduling order. They stay known to the
// queue (in flight) until Done, Park or Backoff.
func (q *Queue) Pop(max int) []*PodInfo {
	var out []*PodInfo
	for len(out) < max && len(q.prios) > 0 {
		prio := q.prios[0]
		l := q.levels[prio]
		ns := l.ring[l.next]
		f := l.byNS[ns]
		e := heap.Pop(f).(*queueEntry)
		if f.Len() == 0 {
			delete(l.byNS, ns)
			l.ring = slices.Delete(l.ring, l.next, l.next+1)
		} else {
			l.next++
		}
		if len(l.ring) == 0 {
			delete(q.levels, prio)
			q.prios = q.prios[1:]
		} else if l.next >= len(l.ring) {
			l.next = 0
		}
		q.active--
		e.state, e.popCycle = stateInFlight, q.moveCycle
		out = append(out, e.pod)
	}
	return out
}

// Done forgets a pod that was bound.
func (q *Queue) Done(key string) { q.Delete(key) }

// Park puts a pod that fits nowhere aside until one of events happens. If
// a change happened since it was popped, it is retried after its backoff
// instead (the change may have been what it needed).
func (q *Queue) Park(key string, events EventMask, now time.Time) {
	e := q.entries[key]
	if e == nil || e.state != stateInFlight {
		return
	}
	e.attempts++
	e.failedAt = now
	if e.popCycle != q.moveCycle {
		q.toBackoff(e, now)
		return
	}
	e.state, e.events = stateParked, events
	q.parked[key] = e
}

// Backoff retries a pod after its backoff (a refused binding).
func (q *Queue) Backoff(key string, now time.Time) {
	e := q.entries[key]
	if e == nil || e.state != stateInFlight {
		return
	}
	e.attempts++
	e.failedAt = now
	q.toBackoff(e, now)
}

// Requeue puts an in-flight pod back at once (its binding was not decided).
func (q *Queue) Requeue(key string) {
	if e := q.entries[key]; e != nil && e.state == stateInFlight {
		q.push(e)
	}
}

func (q *Queue) toBackoff(e *queueEntry, now time.Time) {
	d := initialBackoff << min(max(e.attempts-1, 0), 10)
	e.readyAt = e.failedAt.Add(min(d, maxBackoff))
	if !now.Before(e.readyAt) {
		q.push(e)
		return
	}
	e.state = stateBackoff
	heap.Push(&q.backoff, e)
}

// Move wakes the parked pods that wait for any of events; they go back
// after what is left of their backoff. It returns how many were woken.
func (q *Queue) Move(events EventMask, now time.Time) int {
	if events == 0 {
		return 0
	}
	q.moveCycle++
	var woken []*queueEntry
	for key, e := range q.parked {
		if e.events&events != 0 {
			delete(q.parked, key)
			woken = append(woken, e)
		}
	}
	// In arrival order, so that namespaces join the round-robin in a
	// deterministic order.
	slices.SortFunc(woken, func(a, b *queueEntry) int { return cmp.Compare(a.seq, b.seq) })
	for _, e := range woken {
		q.toBackoff(e, now)
	}
	return len(woken)
}

// Flush activates the pods whose backoff is over, and returns when the
// next one will be (zero when none waits).
func (q *Queue) Flush(now time.Time) time.Time {
	for q.backoff.Len() > 0 {
		e := q.backoff[0]
		if now.Before(e.readyAt) {
			return e.readyAt
		}
		heap.Pop(&q.backoff)
		q.push(e)
	}
	return time.Time{}
}

// push makes e active.
func (q *Queue) push(e *queueEntry) {
	e.state = stateActive
	prio := e.pod.Priority
	l := q.levels[prio]
	if l == nil {
		l = &priorityLevel{byNS: map[string]*fifo{}}
		q.levels[prio] = l
		i, _ := slices.BinarySearchFunc(q.prios, prio, func(a, b int32) int { return int(int64(b) - int64(a)) })
		q.prios = slices.Insert(q.prios, i, prio)
	}
	ns := e.pod.Pod.Namespace
	f := l.byNS[ns]
	if f == nil {
		f = &fifo{}
		l.byNS[ns] = f
		l.ring = append(l.ring, ns)
	}
	heap.Push(f, e)
	q.active++
}

// remove takes e out of whatever structure holds it.
func (q *Queue) remove(e *queueEntry) {
	switch e.state {
	case stateActive:
		prio := e.pod.Priority
		l := q.levels[prio]
		ns := e.pod.Pod.Namespace
		f := l.byNS[ns]
		heap.Remove(f, e.index)
		q.active--
		if f.Len() == 0 {
			delete(l.byNS, ns)
			i := slices.Index(l.ring, ns)
			l.ring = slices.Delete(l.ring, i, i+1)
			if i < l.next {
				l.next--
			}
			if l.next >= len(l.ring) {
				l.next = 0
			}
		}
		if len(l.ring) == 0 {
			delete(q.levels, prio)
			q.prios = slices.DeleteFunc(q.prios, func(p int32) bool { return p == prio })
		}
	case stateBackoff:
		heap.Remove(&q.backoff, e.index)
	case stateParked:
		delete(q.parked, e.pod.Key)
	}
	e.state = stateInFlight
}

// fifo orders one namespace's pods of one priority: oldest first.
type fifo []*queueEntry

func (f fifo) Len() int { return len(f) }
func (f fifo) Less(i, j int) bool {
	a, b := f[i].pod.Pod.CreationTimestamp, f[j].pod.Pod.CreationTimestamp
	if !a.Equal(&b) {
		return a.Before(&b)
	}
	return f[i].seq < f[j].seq
}
func (f fifo) Swap(i, j int) { f[i], f[j] = f[j], f[i]; f[i].index = i; f[j].index = j }
func (f *fifo) Push(x any)   { e := x.(*queueEntry); e.index = len(*f); *f = append(*f, e) }
func (f *fifo) Pop() any {
	old := *f
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*f = old[:len(old)-1]
	return e
}

// backoffHeap orders waiting pods by when they may go back.
type backoffHeap []*queueEntry

func (h backoffHeap) Len() int           { return len(h) }
func (h backoffHeap) Less(i, j int) bool { return h[i].readyAt.Before(h[j].readyAt) }
func (h backoffHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *backoffHeap) Push(x any)        { e := x.(*queueEntry); e.index = len(*h); *h = append(*h, e) }
func (h *backoffHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
