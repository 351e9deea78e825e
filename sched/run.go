package sched

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// Cluster is what the scheduler needs from the leader it runs on;
// *agent.Agent satisfies it.
type Cluster interface {
	View() *fsm.View
	History() *fsm.History
	Propose(context.Context, fsm.Command) (*fsm.Result, error)
	Update(context.Context, api.Object, bool) (*fsm.Record, error)
	Create(context.Context, api.Object) (*fsm.Record, error)
	Logger() *slog.Logger
}

// inflight is one proposed Bind entry.
type inflight struct {
	bindings []fsm.Binding
	res      *fsm.Result
	err      error
}

// Run schedules pending pods until ctx ends (leadership lost). It must run
// on the Raft leader after its barrier; it writes only through c, and any
// state it keeps is rebuilt from c when it starts, so it may be restarted
// on a new leader at any moment. Every binding is re-checked by the FSM, so
// a stale view only costs a retry.
func Run(ctx context.Context, c Cluster, opts Options) error {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1000
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 4
	}
	log := c.Logger().With("component", "scheduler")
	// The writer's workers and the proposals in flight end with this
	// context, so that Run leaves nothing behind whichever way it returns.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &runner{c: c, opts: opts, log: log, results: make(chan *inflight, opts.MaxInFlight)}
	r.w = newWriter(ctx, c, log)
	defer func() {
		cancel()
		r.drain()
		r.w.wait()
	}()
	r.resync()
	log.Info("scheduler started", "nodes", len(r.cache.snap.Nodes()), "pending", r.cache.queue.Len())
	var timer *time.Timer
	for {
		if ctx.Err() != nil {
			return nil
		}
		evs, wake, err := c.History().Since(r.index, r.buf[:0])
		switch {
		case errors.Is(err, fsm.ErrClosed):
			return nil
		case errors.Is(err, fsm.ErrGone):
			r.stale = true
		case err != nil:
			return err
		}
		if r.stale && r.inFlight == 0 {
			log.Info("scheduler fell behind the change history; rebuilding its cache")
			r.resync()
			continue
		}
		if !r.stale {
			for _, e := range evs {
				r.cache.apply(e)
				r.index = e.Index()
			}
			r.buf = evs[:0]
		}
		now := time.Now()
		r.cache.queue.Move(r.cache.takeChanges(), now)
		next := r.cache.queue.Flush(now)
		if r.cache.queue.Len() > 0 && r.inFlight < opts.MaxInFlight && !r.stale {
			r.cycle(ctx, now)
			continue
		}
		var timeout <-chan time.Time
		if !next.IsZero() {
			if timer == nil {
				timer = time.NewTimer(next.Sub(now))
				defer timer.Stop()
			} else {
				timer.Reset(next.Sub(now))
			}
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
		case <-wake:
		case res := <-r.results:
			r.handle(ctx, res)
		case <-timeout:
		}
	}
}

type runner struct {
	c        Cluster
	opts     Options
	log      *slog.Logger
	w        *writer
	cache    *cache
	index    uint64
	buf      []fsm.Event
	stale    bool // history lost: rebuild once nothing is in flight
	inFlight int
	results  chan *inflight
	cycles   uint64
}

// resync rebuilds the cache from a fresh view of the state.
func (r *runner) resync() {
	view := r.c.View()
	r.cache = newCache(view)
	r.index = view.Index()
	r.stale = false
}

// drain waits for the proposals in flight (they end with ctx).
func (r *runner) drain() {
	for ; r.inFlight > 0; r.inFlight-- {
		<-r.results
	}
}

// cycle schedules what is queued and proposes the bindings as one entry.
func (r *runner) cycle(ctx context.Context, now time.Time) {
	pods := r.cache.queue.Pop(r.opts.BatchSize)
	opts := r.opts
	r.cycles++
	opts.Seed += r.cycles
	plan := Schedule(r.cache.snap, pods, opts)
	for _, b := range plan.Bindings {
		r.cache.assume(b.Namespace+"/"+b.Name, b.Node)
	}
	preemptions := map[string]Preemption{}
	for _, p := range plan.Preemptions {
		preemptions[p.Pod.Key] = p
		r.log.Info("preempting", "pod", p.Pod.Key, "node", p.Node, "victims", len(p.Victims))
	}
	for _, u := range plan.Unschedulable {
		r.cache.queue.Park(u.Pod.Key, u.Events, now)
		if p, ok := preemptions[u.Pod.Key]; ok {
			r.w.preempt(u.Pod.Pod, u.Message, p.Node, p.Victims)
		} else {
			r.w.unschedulable(u.Pod.Pod, u.Message)
		}
	}
	if len(plan.Bindings) == 0 {
		return
	}
	r.inFlight++
	f := &inflight{bindings: plan.Bindings}
	go func() {
		f.res, f.err = r.c.Propose(ctx, &fsm.Bind{Bindings: f.bindings, Time: time.Now().UnixNano()})
		r.results <- f
	}()
}

// handle applies the outcome of a Bind entry: refused bindings are undone
// and retried after a backoff.
func (r *runner) handle(ctx context.Context, f *inflight) {
	r.inFlight--
	now := time.Now()
	if f.err != nil || f.res == nil || len(f.res.Batch) != len(f.bindings) {
		if ctx.Err() != nil {
			return
		}
		// The entry may or may not have been applied: rebuild from the
		// state once nothing else is in flight, rather than guess.
		r.log.Warn("binding entry failed; resynchronising", "pods", len(f.bindings), "err", f.err)
		r.stale = true
		return
	}
	refused := 0
	for i, b := range f.bindings {
		key := b.Namespace + "/" + b.Name
		err := f.res.Batch[i].Err
		if err != nil {
			refused++
			r.log.Debug("binding refused", "pod", key, "node", b.Node, "err", err)
		}
		if !r.cache.current(key, b.UID) {
			// Deleted, or replaced by a pod of the same name that the
			// queue already holds in its own right: leave that one alone.
			continue
		}
		switch {
		case err == nil:
			r.cache.queue.Done(key)
		case r.cache.forget(key, b.Node):
			r.cache.queue.Backoff(key, now)
		default:
			r.cache.queue.Delete(key)
		}
	}
	if refused > 0 {
		r.log.Info("bindings refused by the state machine; retrying", "refused", refused, "of", len(f.bindings))
	}
}
