package client

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

// EventType is the kind of a watch event.
type EventType string

const (
	Added    EventType = "ADDED"
	Modified EventType = "MODIFIED"
	Deleted  EventType = "DELETED"
)

// Event is one change seen by a Watcher.
type Event struct {
	Type   EventType
	Object api.Object
}

// Watcher delivers a consistent stream of changes to a set of objects: it
// starts from a list (ADDED for each object unless a resourceVersion was
// given), resumes across dropped connections and server failures from the
// last version it saw, and when the servers no longer hold that history
// (410 Gone) it lists again and emits the difference. Consumers therefore
// see every object's latest state and every deletion, exactly once.
type Watcher struct {
	c      *Client
	kind   *api.Kind
	ns     string
	opts   ListOptions
	events chan Event
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error

	known  map[string]api.Object // current objects by key, for relists
	lastRV uint64
	// atLast counts the events delivered at lastRV per key: one Raft entry
	// (one version) may change many objects, and one object more than once.
	atLast map[string]int
	// replay counts, while a resumed stream replays lastRV, the events per
	// key that were already delivered and must be dropped.
	replay  map[string]int
	pending []Event // computed by a relist, not yet delivered
}

// Watch starts watching objects of kind k in namespace ("" for all).
func (c *Client) Watch(ctx context.Context, k *api.Kind, namespace string, opts ListOptions) (*Watcher, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &Watcher{c: c, kind: k, ns: namespace, opts: opts, events: make(chan Event, 256), cancel: cancel,
		done: make(chan struct{}), known: map[string]api.Object{}, atLast: map[string]int{}}
	if opts.ResourceVersion != "" {
		rv, err := strconv.ParseUint(opts.ResourceVersion, 10, 64)
		if err != nil {
			cancel()
			return nil, errors.New("resourceVersion: must be a decimal number")
		}
		w.lastRV = rv
	} else if err := w.relist(ctx); err != nil {
		cancel()
		return nil, err
	}
	go w.run(ctx)
	return w, nil
}

// Events is closed when the watcher stops.
func (w *Watcher) Events() <-chan Event { return w.events }

// Stop ends the watch and waits for it.
func (w *Watcher) Stop() {
	w.cancel()
	<-w.done
}

// Err is why the watch ended (nil after Stop).
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

func key(obj api.Object) string { return obj.GetNamespace() + "/" + obj.GetName() }

func rvOf(obj api.Object) uint64 {
	rv, _ := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	return rv
}

// relist lists the current state and queues what changed since the last
// known state; run delivers the queue before it watches again (so Watch
// itself never blocks on a consumer that has not started reading).
func (w *Watcher) relist(ctx context.Context) error {
	opts := w.opts
	opts.Continue, opts.ResourceVersion = "", ""
	list, err := w.c.ListAll(ctx, w.kind, w.ns, opts)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var out []Event
	for _, obj := range list.Items {
		k := key(obj)
		seen[k] = true
		prev, ok := w.known[k]
		switch {
		case !ok:
			out = append(out, Event{Added, obj})
		case prev.GetResourceVersion() != obj.GetResourceVersion():
			out = append(out, Event{Modified, obj})
		}
		w.known[k] = obj
	}
	for k, obj := range w.known {
		if !seen[k] {
			out = append(out, Event{Deleted, obj})
			delete(w.known, k)
		}
	}
	w.lastRV, _ = strconv.ParseUint(list.ResourceVersion, 10, 64)
	w.atLast = map[string]int{}
	w.pending = append(w.pending, out...)
	return nil
}

// deliver sends the queued events.
func (w *Watcher) deliver(ctx context.Context) bool {
	for len(w.pending) > 0 {
		select {
		case w.events <- w.pending[0]:
			w.pending = w.pending[1:]
		case <-ctx.Done():
			return false
		}
	}
	w.pending = nil
	return true
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	defer close(w.events)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if !w.deliver(ctx) {
			return
		}
		err := w.stream(ctx)
		if ctx.Err() != nil {
			return
		}
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			if err := w.relist(ctx); err != nil && ctx.Err() == nil {
				w.setErr(err)
				time.Sleep(backoff)
			}
			continue
		}
		if err != nil {
			var se *apierrors.StatusError
			if errors.As(err, &se) && se.ErrStatus.Code >= 400 && se.ErrStatus.Code < 500 {
				w.setErr(err) // a bad request will not get better
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
		if err == nil {
			backoff = 50 * time.Millisecond
		}
	}
}

func (w *Watcher) setErr(err error) {
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
}

type wireEvent struct {
	Type   string          `json:"type"`
	Object json.RawMessage `json:"object"`
}

// stream runs one watch request until it ends.
func (w *Watcher) stream(ctx context.Context) error {
	q := w.opts.query()
	q.Del("limit")
	q.Del("continue")
	q.Set("watch", "true")
	q.Set("allowWatchBookmarks", "true")
	from := w.lastRV
	w.replay = nil
	if len(w.atLast) > 0 && from > 0 {
		// Objects changed by one batched entry share its version: resume
		// from just before it and drop what was already delivered.
		from--
		w.replay = maps.Clone(w.atLast)
	}
	q.Set("resourceVersion", strconv.FormatUint(from, 10))
	resp, err := w.c.Do(ctx, Request{Method: http.MethodGet, Path: w.kind.Path(w.ns), Query: q, Stream: true})
	if err != nil {
		return err
	}
	defer resp.Stream.Close()
	sc := bufio.NewScanner(resp.Stream)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	for sc.Scan() {
		var we wireEvent
		if err := json.Unmarshal(sc.Bytes(), &we); err != nil {
			return err
		}
		switch we.Type {
		case "ERROR":
			var st metav1.Status
			json.Unmarshal(we.Object, &st)
			return &apierrors.StatusError{ErrStatus: st}
		case "BOOKMARK":
			var m struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
			}
			json.Unmarshal(we.Object, &m)
			if rv, _ := strconv.ParseUint(m.Metadata.ResourceVersion, 10, 64); rv > w.lastRV {
				w.lastRV, w.atLast, w.replay = rv, map[string]int{}, nil
			}
			continue
		}
		obj, err := decodeObject(w.kind, we.Object)
		if err != nil {
			return err
		}
		if !w.accept(obj) {
			continue
		}
		t := EventType(we.Type)
		if t == Deleted {
			delete(w.known, key(obj))
		} else {
			w.known[key(obj)] = obj
		}
		select {
		case w.events <- Event{t, obj}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return sc.Err()
}

// accept drops replays of events already delivered and advances lastRV.
// The server sends an entry's events in the same order every time, so a
// resumed stream drops, per key, as many events at lastRV as were
// delivered before; a second change of one object in one entry is new.
func (w *Watcher) accept(obj api.Object) bool {
	rv, k := rvOf(obj), key(obj)
	switch {
	case rv < w.lastRV:
		return false
	case rv == w.lastRV:
		if w.replay[k] > 0 {
			w.replay[k]--
			return false
		}
	default:
		w.lastRV, w.atLast, w.replay = rv, map[string]int{}, nil
	}
	w.atLast[k]++
	return true
}
