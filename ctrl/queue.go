package ctrl

import (
	"sync"
	"time"
)

// Backoff of a key whose reconcile failed: baseBackoff doubled per
// consecutive failure, capped at maxBackoff.
const (
	baseBackoff = 5 * time.Millisecond
	maxBackoff  = 5 * time.Second
)

// queue is a deduplicating work queue of keys. A key is held at most once;
// a key added while a worker processes it is handed out again after Done,
// never to a second worker at the same time. Delayed adds keep only the
// earliest due time per key.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []string
	dirty      map[string]bool // queued, or to be queued again after Done
	processing map[string]bool
	failures   map[string]int
	timers     map[string]*delayed
	closed     bool
}

type delayed struct {
	due   time.Time
	timer *time.Timer
}

func newQueue() *queue {
	q := &queue{dirty: map[string]bool{}, processing: map[string]bool{}, failures: map[string]int{}, timers: map[string]*delayed{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key unless it is already waiting.
func (q *queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(key)
}

func (q *queue) addLocked(key string) {
	if q.closed || q.dirty[key] {
		return
	}
	q.dirty[key] = true
	if q.processing[key] {
		return // Done queues it again
	}
	q.items = append(q.items, key)
	q.cond.Signal()
}

// AddAfter queues key once d has passed.
func (q *queue) AddAfter(key string, d time.Duration) {
	if d <= 0 {
		q.Add(key)
		return
	}
	due := time.Now().Add(d)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if t, ok := q.timers[key]; ok {
		if !t.due.After(due) {
			return
		}
		t.timer.Stop()
	}
	t := &delayed{due: due}
	t.timer = time.AfterFunc(d, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.timers[key] == t {
			delete(q.timers, key)
		}
		q.addLocked(key)
	})
	q.timers[key] = t
}

// get blocks until a key is available; false once the queue is closed.
func (q *queue) get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	key := q.items[0]
	q.items[0] = ""
	q.items = q.items[1:]
	if len(q.items) == 0 {
		q.items = nil // let the backing array go after a burst
	}
	delete(q.dirty, key)
	q.processing[key] = true
	return key, true
}

// done ends the processing of key; if it was added meanwhile it is queued.
func (q *queue) done(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, key)
	if q.dirty[key] && !q.closed {
		q.items = append(q.items, key)
		q.cond.Signal()
	}
}

// retry queues key again after its backoff.
func (q *queue) retry(key string) {
	q.mu.Lock()
	n := q.failures[key]
	q.failures[key] = n + 1
	q.mu.Unlock()
	q.AddAfter(key, backoff(n))
}

func backoff(failures int) time.Duration {
	d := baseBackoff
	for range failures {
		d *= 2
		if d >= maxBackoff {
			return maxBackoff
		}
	}
	return d
}

// forget resets key's backoff after a success.
func (q *queue) forget(key string) {
	q.mu.Lock()
	delete(q.failures, key)
	q.mu.Unlock()
}

// close wakes every worker; later adds are ignored.
func (q *queue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, t := range q.timers {
		t.timer.Stop()
	}
	q.timers = map[string]*delayed{}
	q.cond.Broadcast()
}

// len is the number of keys waiting (for tests and logs).
func (q *queue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}
