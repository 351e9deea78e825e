package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
)

// Barrier is a moment when no client operation was in flight. It splits a
// long history into segments that porcupine checks one by one (its search
// needs memory quadratic in a segment's length). At the barrier every key
// is read linearizably: the read ends one segment and its result is the
// register's initial state in the next.
type Barrier struct {
	Start, End time.Duration // every client parked at Start; the reads done at End
	Reads      map[string]Op
}

// gate parks the clients between two rounds.
type gate struct {
	mu     sync.Mutex
	cond   *sync.Cond
	closed bool
	parked int
}

func (g *gate) init() { g.cond = sync.NewCond(&g.mu) }

// pass returns at once unless the gate is closed; then it waits until it
// opens.
func (g *gate) pass() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		return
	}
	g.parked++
	g.cond.Broadcast()
	for g.closed {
		g.cond.Wait()
	}
	g.parked--
}

// Quiesce parks every client (letting each finish the operation it is
// in), reads every key, records the barrier and lets the clients go on.
// Call it when the cluster is healthy: an unknown write of the segment
// before is then either applied or dead for good (a leader of a newer term
// has committed), which the checker relies on.
func (w *Workload) Quiesce(timeout time.Duration) error {
	g := &w.gate
	g.mu.Lock()
	g.closed = true
	for g.parked < w.cfg.Clients {
		g.cond.Wait()
	}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.closed = false
		g.cond.Broadcast()
		g.mu.Unlock()
	}()
	b := Barrier{Start: w.Rec.Now(), Reads: map[string]Op{}}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for _, k := range w.Keys {
		for {
			call := w.Rec.Now()
			obj, err := w.cl.Get(ctx, api.ConfigMap, w.cfg.Namespace, k, false)
			if err == nil {
				cm := obj.(*corev1.ConfigMap)
				op := Op{Client: -2, Kind: OpRead, Key: k, Value: cm.Data["v"], Version: rvOf(cm), Outcome: OK, Call: call, Return: w.Rec.Now()}
				w.Rec.Add(op)
				b.Reads[k] = op
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("barrier read of %s: %w", k, err)
			}
		}
	}
	b.End = w.Rec.Now()
	w.barriers = append(w.barriers, b)
	return nil
}
