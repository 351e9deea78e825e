package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// WorkloadConfig tunes the clients.
type WorkloadConfig struct {
	Clients   int     // concurrent clients (default 6)
	Keys      int     // registers, ConfigMaps chaos-0.. (default 3)
	ReadShare float64 // share of rounds that only read (default 0.3)
	Namespace string  // default "default"
	// Think is a pause before each round (a long soak keeps its rate, and
	// its share of the machine, down).
	Think time.Duration
}

// Workload is a set of clients that read (linearizably) and update with
// compare-and-set a few ConfigMaps through the Go client, which fails over
// between the servers and retries as it always does. Every operation is
// recorded with its invocation and response times and its outcome.
type Workload struct {
	cfg WorkloadConfig
	Rec *Recorder
	cl  *client.Client   // for setup and the final reads
	cls []*client.Client // one per client, each preferring another server
	// writer sends every client's updates, so that concurrent updates go
	// in batches (BatchAfter 1), as a loaded component's writes do.
	writer *client.Client
	Keys   []string
	watch  *keyWatch

	stopping chan struct{}
	gate     gate
	barriers []Barrier
	wg       sync.WaitGroup
	// Acked counts acknowledged writes; lastAckedCall is the latest
	// invocation time of an acknowledged write (for progress checks).
	Acked         atomic.Int64
	lastAckedCall atomic.Int64
}

// StartWorkload creates the registers and starts the clients.
func StartWorkload(c *Cluster, cfg WorkloadConfig) *Workload {
	c.t.Helper()
	if cfg.Clients == 0 {
		cfg.Clients = 6
	}
	if cfg.Keys == 0 {
		cfg.Keys = 3
	}
	if cfg.ReadShare == 0 {
		cfg.ReadShare = 0.3
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	w := &Workload{cfg: cfg, Rec: NewRecorder(), cl: c.Client(), stopping: make(chan struct{})}
	w.gate.init()
	ctx := context.Background()
	list, err := w.cl.List(ctx, api.ConfigMap, cfg.Namespace, client.ListOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	from, _ := strconv.ParseUint(list.ResourceVersion, 10, 64)
	for i := range cfg.Keys {
		w.Keys = append(w.Keys, fmt.Sprintf("chaos-%d", i))
	}
	w.watch = startKeyWatch(c.Client(), cfg.Namespace, w.Keys, from)
	for i, k := range w.Keys {
		cm := configMap(cfg.Namespace, k, fmt.Sprintf("init-%d", i), "")
		call := w.Rec.Now()
		obj, err := w.cl.Create(ctx, cm)
		if err != nil {
			c.t.Fatalf("creating %s: %v", k, err)
		}
		w.Rec.Add(Op{Client: -1, Kind: OpCreate, Key: k, Value: cm.Data["v"], Version: rvOf(obj), RespValue: cm.Data["v"],
			Outcome: OK, Call: call, Return: w.Rec.Now()})
	}
	urls := c.URLs()
	for i := range cfg.Clients {
		// Each client lists the servers from a different one, so that
		// reads (which go to the first server that answers) are served by
		// followers as well as by the leader.
		rot := append(append([]string{}, urls[i%len(urls):]...), urls[:i%len(urls)]...)
		w.cls = append(w.cls, c.Client(rot...))
	}
	w.writer = c.clientWith(nil, batchAfterOne)
	for i := range cfg.Clients {
		w.wg.Add(1)
		go w.client(i)
	}
	return w
}

// BatchedWrites is how many updates went to the servers in batches.
func (w *Workload) BatchedWrites() uint64 { return w.writer.BatchedWrites() }

func configMap(ns, name, value, rv string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv},
		Data: map[string]string{"v": value}}
	api.ConfigMap.SetTypeMeta(cm)
	return cm
}

func rvOf(obj api.Object) uint64 {
	v, _ := strconv.ParseUint(obj.GetResourceVersion(), 10, 64)
	return v
}

func (w *Workload) client(id int) {
	defer w.wg.Done()
	cl := w.cls[id]
	r := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	ctx := context.Background()
	for seq := 0; ; seq++ {
		select {
		case <-w.stopping:
			return
		default:
		}
		w.gate.pass()
		if w.cfg.Think > 0 {
			time.Sleep(w.cfg.Think) // the client's think time, not a synchronisation
		}
		key := w.Keys[r.IntN(len(w.Keys))]
		call := w.Rec.Now()
		obj, err := cl.Get(ctx, api.ConfigMap, w.cfg.Namespace, key, false)
		ret := w.Rec.Now()
		if err != nil {
			// A read that failed has no effect: nothing to check.
			continue
		}
		cur := obj.(*corev1.ConfigMap)
		w.Rec.Add(Op{Client: id, Kind: OpRead, Key: key, Value: cur.Data["v"], Version: rvOf(cur), Outcome: OK, Call: call, Return: ret})
		if r.Float64() < w.cfg.ReadShare {
			continue
		}
		op := Op{Client: id, Kind: OpCAS, Key: key, Expect: rvOf(cur), Value: fmt.Sprintf("c%d-%d", id, seq)}
		op.Call = w.Rec.Now()
		res, err := w.writer.Update(ctx, configMap(w.cfg.Namespace, key, op.Value, cur.ResourceVersion))
		op.Return = w.Rec.Now()
		if err != nil {
			op.Outcome, op.Err = classify(err)
		} else {
			op.Outcome, op.Version, op.RespValue = OK, rvOf(res), res.(*corev1.ConfigMap).Data["v"]
			w.Acked.Add(1)
			for {
				old := w.lastAckedCall.Load()
				if int64(op.Call) <= old || w.lastAckedCall.CompareAndSwap(old, int64(op.Call)) {
					break
				}
			}
		}
		w.Rec.Add(op)
	}
}

// classify tells a definite refusal from an unknown outcome. Only 409 is
// definite: the conflict is decided when the entry is applied, after the
// servers' request-ID check, so no earlier attempt of the same call was
// applied. Any other error may follow an attempt that was applied (the
// client retries through failures), so its outcome is unknown; other 4xx
// answers are marked Failed so that the report shows them.
func classify(err error) (Outcome, string) {
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	if se, ok := asStatus(err); ok {
		code := se.ErrStatus.Code
		switch {
		case code == http.StatusConflict:
			return Conflict, ""
		case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
			return Failed, msg
		}
	}
	return Unknown, msg
}

func asStatus(err error) (*apierrors.StatusError, bool) {
	var se *apierrors.StatusError
	ok := errors.As(err, &se)
	return se, ok
}

// AckedAfter reports whether a write invoked after history time t has
// been acknowledged: it was committed after t.
func (w *Workload) AckedAfter(t time.Duration) bool { return time.Duration(w.lastAckedCall.Load()) > t }

// WaitAcks waits until n more writes are acknowledged.
func (w *Workload) WaitAcks(n int64, timeout time.Duration) error {
	target := w.Acked.Load() + n
	if err := poll(context.Background(), timeout, func() bool { return w.Acked.Load() >= target }); err != nil {
		return fmt.Errorf("only %d of %d more writes acknowledged in %s", n-(target-w.Acked.Load()), n, timeout)
	}
	return nil
}

// Stop stops the clients, letting the calls in flight finish (each within
// the client's retry bound), then waits until the change stream has
// caught up with the newest version any client saw and stops it.
func (w *Workload) Stop() (History, error) {
	close(w.stopping)
	w.wg.Wait()
	ops := w.Rec.Ops()
	var top uint64
	for _, op := range ops {
		top = max(top, op.Version)
	}
	// The newest version of every key, read linearizably now, bounds what
	// the stream must deliver.
	ctx := context.Background()
	for _, k := range w.Keys {
		obj, err := w.cl.Get(ctx, api.ConfigMap, w.cfg.Namespace, k, false)
		if err != nil {
			return History{}, fmt.Errorf("final read of %s: %w", k, err)
		}
		top = max(top, rvOf(obj))
	}
	werr := w.watch.waitFor(ctx, top, time.Minute)
	versions, gap, resumes := w.watch.stop()
	if werr != nil && gap == "" {
		gap = fmt.Sprintf("the change stream did not reach version %d within a minute", top)
	}
	return History{Ops: ops, Versions: versions, Gap: gap, WatchResumes: resumes, Keys: w.Keys, Barriers: w.barriers}, nil
}

// History is what a workload recorded: the clients' operations and every
// key's sequence of versions.
type History struct {
	Ops          []Op
	Versions     map[string][]Version
	Gap          string // why Versions may be incomplete ("" = complete)
	WatchResumes int
	Keys         []string
	// Barriers split the history into segments checked one by one (see
	// Workload.Quiesce); none: one segment.
	Barriers []Barrier
}
