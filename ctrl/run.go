package ctrl

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// Cluster is what controllers need from the leader (*agent.Agent): its
// state and change history, and the in-process write API. Every write
// is applied to the leader's state before it returns.
type Cluster interface {
	View() *fsm.View
	History() *fsm.History
	Create(ctx context.Context, obj api.Object) (*fsm.Record, error)
	CreateMany(ctx context.Context, objs []api.Object) ([]*fsm.Result, error)
	Update(ctx context.Context, obj api.Object, status bool) (*fsm.Record, error)
	Delete(ctx context.Context, k *api.Kind, namespace, name string, opts agent.DeleteOptions) (*fsm.Result, error)
	Propose(ctx context.Context, cmd fsm.Command) (*fsm.Result, error)
	LastHeartbeat(node string) (time.Time, bool)
	Logger() *slog.Logger
}

var _ Cluster = (*agent.Agent)(nil)

// Edge defaults of the node lifecycle controller (Kubernetes: 40 s grace,
// 5 s period). A worker heartbeats every second, so 4 s is three missed
// heartbeats and a little slack: with agent.DefaultTolerationSeconds (5 s)
// a dead worker's pods are deleted about 9-10 s after its last heartbeat
// and replaced at once.
const (
	DefaultNodeMonitorGracePeriod = 4 * time.Second
	DefaultNodeMonitorPeriod      = time.Second
)

// Options tune the controllers; zero values take the defaults.
type Options struct {
	// NodeMonitorGracePeriod is how long a node may go without a
	// heartbeat before it is marked Ready=Unknown and tainted
	// unreachable. A new leader also waits this long before it trusts
	// its (empty) heartbeat table.
	NodeMonitorGracePeriod time.Duration
	// NodeMonitorPeriod is how often heartbeats are checked.
	NodeMonitorPeriod time.Duration
	// Workers is the number of concurrent reconciles per controller
	// (default 4). A key is never reconciled by two workers at once.
	Workers int
	// EventTTL is how long an Event stays after it last happened
	// (default DefaultEventTTL; eventttl.go).
	EventTTL time.Duration
}

func (o Options) withDefaults() Options {
	if o.NodeMonitorGracePeriod <= 0 {
		o.NodeMonitorGracePeriod = DefaultNodeMonitorGracePeriod
	}
	if o.NodeMonitorPeriod <= 0 {
		o.NodeMonitorPeriod = DefaultNodeMonitorPeriod
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.EventTTL <= 0 {
		o.EventTTL = DefaultEventTTL
	}
	return o
}

// Run runs every controller until ctx ends (leadership is lost), then
// waits for their workers to return. Register it with agent.OnLeader.
func Run(ctx context.Context, c Cluster, opts Options) {
	opts = opts.withDefaults()
	log := c.Logger().With("component", "controllers")
	rec := newRecorder(c, log)
	ctrls := []*controller{
		newReplicaSetController(c, rec),
		newDeploymentController(c, rec),
		newDaemonSetController(c, rec),
		newGarbageCollector(c),
		newNodeLifecycleController(c, rec, opts),
		newEndpointsController(c),
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		rec.run(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		pruneEvents(ctx, c, opts.EventTTL)
	}()
	for _, ct := range ctrls {
		ct.log = log.With("controller", ct.name)
		for range opts.Workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ct.work(ctx)
			}()
		}
		if ct.resync != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ct.resyncLoop(ctx, c)
			}()
		}
	}
	log.Info("controllers started")
	follow(ctx, c, ctrls, log)
	for _, ct := range ctrls {
		ct.queue.close()
	}
	wg.Wait()
	log.Info("controllers stopped")
}

// follow lists every controller's keys from one view, then feeds them the
// changes after that view's index from the history, so that no change is
// missed between the list and the watch. When the history no longer holds
// the next change (fsm.ErrGone), it lists everything again.
func follow(ctx context.Context, c Cluster, ctrls []*controller, log *slog.Logger) {
	byKind := map[*api.Kind][]*controller{}
	for _, ct := range ctrls {
		for _, k := range ct.kinds {
			byKind[k] = append(byKind[k], ct)
		}
	}
	relist := func() uint64 {
		v := c.View()
		for _, ct := range ctrls {
			ct.list(v, ct.queue.Add)
		}
		return v.Index()
	}
	after := relist()
	var buf []fsm.Event
	for {
		evs, wake, err := c.History().Since(after, buf[:0])
		switch {
		case errors.Is(err, fsm.ErrGone):
			log.Warn("change history overtaken; listing everything again", "after", after, "err", err)
			after = relist()
			continue
		case err != nil:
			<-ctx.Done() // the history closes when the agent shuts down
			return
		}
		if len(evs) > 0 {
			v := c.View()
			for _, ev := range evs {
				for _, ct := range byKind[ev.Record.Kind] {
					ct.keysFor(ev, v, ct.queue.Add)
				}
			}
			after = evs[len(evs)-1].Index()
			clear(evs) // drop references to records before reusing the buffer
			buf = evs
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		}
	}
}

// controller is one level-triggered reconcile loop over string keys.
type controller struct {
	name string
	// kinds are the kinds whose changes keysFor maps to keys.
	kinds []*api.Kind
	// list adds every key worth reconciling in a full view (at start and
	// after the history was overtaken).
	list func(v *fsm.View, add func(string))
	// keysFor adds the keys one change affects; v is the latest view.
	keysFor func(ev fsm.Event, v *fsm.View, add func(string))
	// resync, when set, is called every resyncEvery, for what changes
	// without an event in the log (heartbeats, clocks).
	resync      func(v *fsm.View, add func(string))
	resyncEvery time.Duration
	// reconcile makes the observed state of key what it should be. It is
	// idempotent and reads the latest view.
	reconcile func(ctx context.Context, key string) error

	queue *queue
	log   *slog.Logger
}

func (ct *controller) work(ctx context.Context) {
	for {
		key, ok := ct.queue.get()
		if !ok {
			return
		}
		err := ct.reconcile(ctx, key)
		switch {
		case ctx.Err() != nil:
			ct.queue.done(key)
			return
		case err == nil:
			ct.queue.forget(key)
		case errors.Is(err, fsm.ErrConflict) || errors.Is(err, errRetry):
			ct.log.Debug("reconcile will retry", "key", key, "err", err)
			ct.queue.retry(key)
		default:
			ct.log.Warn("reconcile failed", "key", key, "err", err)
			ct.queue.retry(key)
		}
		ct.queue.done(key)
	}
}

func (ct *controller) resyncLoop(ctx context.Context, c Cluster) {
	every(ctx, ct.resyncEvery, func() { ct.resync(c.View(), ct.queue.Add) })
}

// every calls fn every period until ctx ends.
func every(ctx context.Context, period time.Duration, fn func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// errRetry asks for a quiet retry with backoff: something expected is
// not there yet (a name collision, a lost race).
var errRetry = errors.New("retry")

// nsKey is the key of a namespaced object.
func nsKey(namespace, name string) string { return namespace + "/" + name }

func splitKey(key string) (namespace, name string) {
	ns, name, ok := strings.Cut(key, "/")
	if !ok {
		return "", key
	}
	return ns, name
}
