package agent

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// pipelineStallLimit bounds how long one pipelined AppendEntries may block
// before its pipeline is closed. A healthy pipeline blocks for one round
// trip at most (it is how the transport pushes back), so a second means
// the pipeline is wedged.
const pipelineStallLimit = time.Second

// watchdogTransport is hashicorp/raft's NetworkTransport with pipelines that
// cannot wedge their replication goroutine.
//
// The problem (hashicorp/raft #612): when a pipeline's response decoder
// stops (a follower answers with a newer term or a failed append), nobody
// consumes the transport's finished futures any more, so the next few
// AppendEntries calls block forever on the transport's hand-off channel.
// The replication goroutine stuck there never sees its stop signal, and
// raft.Shutdown, which waits for every goroutine, hangs. Closing the
// pipeline releases the blocked call with ErrPipelineShutdown; raft then
// falls back to plain AppendEntries RPCs and pipelines again later, which
// is always correct.
//
// Embedding the *raft.NetworkTransport keeps every optional interface raft
// looks for (WithClose, WithPreVote).
type watchdogTransport struct {
	*raft.NetworkTransport
	limit time.Duration
}

func (t *watchdogTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return newWatchdogPipeline(p, t.limit), nil
}

// watchdogPipeline closes its pipeline when an AppendEntries call blocks
// longer than limit.
type watchdogPipeline struct {
	raft.AppendPipeline
	limit time.Duration

	mu    sync.Mutex
	timer *time.Timer // reused across calls: one per pipeline, not per entry
}

func newWatchdogPipeline(p raft.AppendPipeline, limit time.Duration) *watchdogPipeline {
	w := &watchdogPipeline{AppendPipeline: p, limit: limit}
	w.timer = time.AfterFunc(time.Hour, func() { p.Close() })
	w.timer.Stop()
	return w
}

func (w *watchdogPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	// raft calls AppendEntries from one goroutine per pipeline; the mutex
	// only keeps the timer safe should that ever change.
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer.Reset(w.limit)
	f, err := w.AppendPipeline.AppendEntries(args, resp)
	w.timer.Stop()
	return f, err
}

func (w *watchdogPipeline) Close() error {
	w.timer.Stop()
	return w.AppendPipeline.Close()
}
