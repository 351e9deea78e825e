package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"orch.dev/orch/fsm"
)

// Batching limits: one Raft entry carries at most this many commands or
// about this many bytes, and at most maxInflight entries are proposed and
// not yet committed. While that many are in flight, new writes queue up
// and form the next entry, so batches grow with the load by themselves
// while a lone write still goes out at once.
const (
	maxBatchCommands = 512
	maxBatchBytes    = 1 << 20
	maxInflight      = 2
)

// proposer turns the writes that arrive while Raft is busy into one Raft
// entry (an fsm.Batch), so that the per-entry costs (log store, replication
// encoding, follower decoding) are paid once per batch rather than once per
// write. Each command keeps its own result and request ID.
type proposer struct {
	apply    func(data []byte) raft.ApplyFuture // raft.Apply
	stop     <-chan struct{}
	in       chan *proposal
	inflight chan struct{} // one token per uncommitted entry
}

type proposal struct {
	cmd  fsm.Command
	data []byte // fsm.Encode(cmd)
	done chan proposalResult
}

type proposalResult struct {
	res *fsm.Result
	err error
}

func newProposer(apply func([]byte) raft.ApplyFuture, stop <-chan struct{}, inflight int) *proposer {
	return &proposer{apply: apply, stop: stop, in: make(chan *proposal, 4*maxBatchCommands), inflight: make(chan struct{}, inflight)}
}

// propose commits cmd through Raft; this server must be the leader.
func (p *proposer) propose(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	pr := &proposal{cmd: cmd, data: fsm.Encode(cmd), done: make(chan proposalResult, 1)}
	select {
	case p.in <- pr:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.stop:
		return nil, errShuttingDown
	}
	select {
	case r := <-pr.done:
		return r.res, r.err
	case <-ctx.Done():
		// The write may still be applied; a client retry with the same
		// request ID gets its outcome.
		return nil, fmt.Errorf("%w: %v", errOutcomeUnknown, ctx.Err())
	}
}

func (p *proposer) run() {
	var carry *proposal
	for {
		select {
		case p.inflight <- struct{}{}:
		case <-p.stop:
			return
		}
		var batch []*proposal
		batch, carry = p.gather(carry)
		if batch == nil {
			return
		}
		p.commit(batch)
	}
}

// gather collects the proposals of the next entry: the carried one or the
// next to arrive, then whatever is queued. A Batch command (delete
// collection, controllers) travels alone; one met while draining is
// returned to be carried into the following entry, keeping arrival order.
func (p *proposer) gather(carry *proposal) (batch []*proposal, next *proposal) {
	first := carry
	if first == nil {
		select {
		case first = <-p.in:
		case <-p.stop:
			return nil, nil
		}
	}
	batch = []*proposal{first}
	if isBatch(first) {
		return batch, nil
	}
	size := len(first.data)
	for len(batch) < maxBatchCommands && size < maxBatchBytes {
		select {
		case pr := <-p.in:
			if isBatch(pr) {
				return batch, pr
			}
			batch = append(batch, pr)
			size += len(pr.data)
		default:
			return batch, nil
		}
	}
	return batch, nil
}

func isBatch(pr *proposal) bool {
	_, ok := pr.cmd.(*fsm.Batch)
	return ok
}

// commit hands the batch to Raft and answers each proposal when it
// commits; the next batch is formed meanwhile.
func (p *proposer) commit(batch []*proposal) {
	data := batch[0].data
	if len(batch) > 1 {
		encoded := make([][]byte, len(batch))
		for i, pr := range batch {
			encoded[i] = pr.data
		}
		data = fsm.EncodeBatch(encoded)
	}
	f := p.apply(data)
	go func() {
		err := f.Error()
		<-p.inflight
		if errors.Is(err, raft.ErrLeadershipLost) {
			err = errOutcomeUnknown
		}
		var res *fsm.Result
		if err == nil {
			var ok bool
			if res, ok = f.Response().(*fsm.Result); !ok || res == nil {
				err = fmt.Errorf("raft apply returned %T", f.Response())
			}
		}
		for i, pr := range batch {
			r := proposalResult{err: err}
			if err == nil {
				r.res = res
				if len(batch) > 1 {
					r.res = res.Batch[i]
				}
				r.err = r.res.Err
			}
			pr.done <- r
		}
	}()
}
