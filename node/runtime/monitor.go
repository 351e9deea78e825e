package runtime

import (
	"context"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/typeurl/v2"
)

// monitor follows containerd's task events for the runtime's namespace. On
// a main process's exit it records the exit in the container's labels and
// deletes the task (see finalize), then tells Events subscribers. After
// every (re)connection it finalizes tasks that exited while nobody watched
// and sends EventResync.
type monitor struct {
	c      *Containerd
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	subs    map[*subscriber]struct{}
	oom     map[string]bool            // OOM seen, exit not yet recorded
	waiters map[string][]chan struct{} // closed when the container's exit is recorded
}

type subscriber struct {
	ch   chan Event
	lost bool // an event was dropped: send EventResync when there is room
}

// startMonitor sets c.mon and returns once it has subscribed to
// containerd's events and recorded the exits it missed (its first
// reconcile uses c.mon, so c.mon is set before it runs).
func startMonitor(c *Containerd) {
	ctx, cancel := context.WithCancel(c.withClientLog(context.Background()))
	m := &monitor{c: c, cancel: cancel, done: make(chan struct{}),
		subs: map[*subscriber]struct{}{}, oom: map[string]bool{}, waiters: map[string][]chan struct{}{}}
	c.mon = m
	ready := make(chan struct{})
	go m.run(ctx, ready)
	<-ready
}

func (m *monitor) stop() {
	m.cancel()
	<-m.done
}

func (m *monitor) run(ctx context.Context, ready chan struct{}) {
	defer close(m.done)
	backoff := 100 * time.Millisecond
	for {
		sctx, cancel := context.WithCancel(ctx)
		evs, errs := m.c.client.Subscribe(sctx,
			`namespace==`+m.c.cfg.Namespace+`,topic=="/tasks/exit"`,
			`namespace==`+m.c.cfg.Namespace+`,topic=="/tasks/oom"`)
		// Subscribed before looking: an exit is either seen here or arrives
		// as an event.
		if m.reconcile(ctx) == nil {
			backoff = 100 * time.Millisecond
		}
		if ready != nil {
			close(ready)
			ready = nil
		}
		m.broadcast(Event{Type: EventResync, At: time.Now()})
	loop:
		for {
			select {
			case env := <-evs:
				m.handle(ctx, env.Event)
			case err := <-errs:
				m.c.log.Warn("containerd event stream broken", "err", err)
				break loop
			case <-ctx.Done():
				cancel()
				return
			}
		}
		cancel()
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
		case <-ctx.Done():
			return
		}
	}
}

func (m *monitor) handle(ctx context.Context, any typeurl.Any) {
	v, err := typeurl.UnmarshalAny(any)
	if err != nil {
		return
	}
	switch e := v.(type) {
	case *apievents.TaskExit:
		if e.ID != e.ContainerID {
			return // an exec process
		}
		if err := m.c.finalize(ctx, e.ContainerID, e.ExitStatus, e.ExitedAt.AsTime()); err != nil {
			m.c.log.Warn("recording container exit", "id", e.ContainerID, "err", err)
		}
		m.broadcast(Event{Type: EventExit, ContainerID: e.ContainerID, ExitCode: int(e.ExitStatus), At: e.ExitedAt.AsTime()})
	case *apievents.TaskOOM:
		m.mu.Lock()
		m.oom[e.ContainerID] = true
		m.mu.Unlock()
		m.broadcast(Event{Type: EventOOM, ContainerID: e.ContainerID, At: time.Now()})
	}
}

// reconcile finalizes every stopped task.
func (m *monitor) reconcile(ctx context.Context) error {
	r, err := m.c.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return err
	}
	for _, p := range r.Tasks {
		if p.Status == tasktypes.Status_STOPPED {
			m.c.finalize(ctx, p.ID, p.ExitStatus, p.ExitedAt.AsTime())
		}
	}
	return nil
}

func (m *monitor) broadcast(e Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for s := range m.subs {
		if s.lost {
			select {
			case s.ch <- Event{Type: EventResync, At: e.At}:
				s.lost = false
			default:
				continue
			}
		}
		select {
		case s.ch <- e:
		default:
			s.lost = true
		}
	}
}

// takeOOM reports and forgets whether an OOM kill was seen for id.
func (m *monitor) takeOOM(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	oom := m.oom[id]
	delete(m.oom, id)
	return oom
}

// exited wakes whoever waits for id's exit.
func (m *monitor) exited(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, w := range m.waiters[id] {
		close(w)
	}
	delete(m.waiters, id)
}

// waitExit returns a channel closed when id's exit is recorded (it may
// already be: the caller checks status after calling this) and a func to
// stop waiting.
func (m *monitor) waitExit(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	m.mu.Lock()
	m.waiters[id] = append(m.waiters[id], ch)
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		ws := m.waiters[id]
		for i, w := range ws {
			if w == ch {
				m.waiters[id] = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(m.waiters[id]) == 0 {
			delete(m.waiters, id)
		}
	}
}

func (m *monitor) forget(id string) {
	m.mu.Lock()
	delete(m.oom, id)
	m.mu.Unlock()
	m.exited(id)
}

// Events implements Runtime.
func (c *Containerd) Events(ctx context.Context) <-chan Event {
	s := &subscriber{ch: make(chan Event, 1024)}
	m := c.mon
	m.mu.Lock()
	m.subs[s] = struct{}{}
	m.mu.Unlock()
	out := make(chan Event)
	go func() {
		defer close(out)
		defer func() {
			m.mu.Lock()
			delete(m.subs, s)
			m.mu.Unlock()
		}()
		for {
			select {
			case e := <-s.ch:
				select {
				case out <- e:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			case <-m.done:
				return
			}
		}
	}()
	return out
}
