package fsm

import (
	"fmt"
	"sort"
	"sync"
)

// EventType is the kind of change a watch event reports.
type EventType string

const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is one change to one object. For Deleted, Record holds the object's
// last state with its resourceVersion set to the deleting index. Prev is the
// state before a Modified change, so that a filtered watch can tell an
// object entering or leaving its selector.
type Event struct {
	Type   EventType
	Record *Record
	Prev   *Record
}

// Index is the Raft index of the change.
func (e Event) Index() uint64 { return e.Record.Version }

// History keeps the most recent changes in a ring, so that watches can start
// from a past resourceVersion and followers can serve watches locally. It is
// derived state: each server builds its own from what its FSM applies.
type History struct {
	mu     sync.Mutex
	ring   []Event
	head   int // position of the oldest event
	n      int // events held
	base   uint64
	closed bool
	wake   chan struct{}
}

// NewHistory keeps up to capacity events.
func NewHistory(capacity int) *History {
	if capacity < 1 {
		capacity = 1
	}
	return &History{ring: make([]Event, capacity), wake: make(chan struct{})}
}

// publish appends events (in index order) and wakes every waiting watcher.
func (h *History) publish(evs []Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	for _, e := range evs {
		if h.n == len(h.ring) {
			// Dropping the oldest event makes its index the new base: only
			// watches from that index onwards can still be served completely.
			h.base = h.ring[h.head].Index()
			h.ring[h.head] = Event{}
			h.head = (h.head + 1) % len(h.ring)
			h.n--
		}
		h.ring[(h.head+h.n)%len(h.ring)] = e
		h.n++
	}
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

// reset drops all history after a snapshot restore at index.
func (h *History) reset(index uint64) {
	h.mu.Lock()
	for i := range h.ring {
		h.ring[i] = Event{}
	}
	h.head, h.n, h.base = 0, 0, index
	close(h.wake)
	h.wake = make(chan struct{})
	h.mu.Unlock()
}

// Close wakes every watcher for the last time; later Since calls fail.
func (h *History) Close() {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.wake)
	}
	h.mu.Unlock()
}

// ErrClosed is returned by Since after Close.
var ErrClosed = fmt.Errorf("history closed")

// Since appends to buf the events with an index greater than after and
// returns them with a channel that is closed when more arrive. It fails with
// ErrGone when events after `after` have already been dropped.
func (h *History) Since(after uint64, buf []Event) ([]Event, <-chan struct{}, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return buf, nil, ErrClosed
	}
	if after < h.base {
		return buf, nil, fmt.Errorf("%w: %d is older than the oldest retained change (%d)", ErrGone, after, h.base)
	}
	at := func(i int) Event { return h.ring[(h.head+i)%len(h.ring)] }
	first := sort.Search(h.n, func(i int) bool { return at(i).Index() > after })
	for i := first; i < h.n; i++ {
		buf = append(buf, at(i))
	}
	return buf, h.wake, nil
}

// Base is the oldest index from which a watch can be served.
func (h *History) Base() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.base
}
