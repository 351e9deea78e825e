package agent

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/raft"

	"orch.dev/orch/fsm"
)

// Batching limits: one Raft entry carries at most this many commands or
// about this many bytes.
const (
	maxBatchCommands = 512
	maxBatchBytes    = 1 << 20
)

// proposer turns the writes that arrive while Raft is busy into one Raft
// entry (an fsm.Batch), so that the per-entry costs (log store, replication
// encoding, follower decoding) are paid once per batch rather than once per
// write. Each command keeps its own result and request ID.
type proposer struct {
	a  *Agent
	in chan *proposal
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

func newProposer(a *Agent) *proposer {
	return &proposer{a: a, in: make(chan *proposal, 4*maxBatchCommands)}
}

// propose commits cmd through Raft; this server must be the leader.
func (p *proposer) propose(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	pr := &proposal{cmd: cmd, data: fsm.Encode(cmd), done: make(chan proposalResult, 1)}
	select {
	case p.in <- pr:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-p.a.stop:
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
	for {
		var first *proposal
		select {
		case first = <-p.in:
		case <-p.a.stop:
			return
		}
		batch := []*proposal{first}
		size := len(first.data)
		// A Batch command (delete-collection, controllers) travels alone.
		if _, nested := first.cmd.(*fsm.Batch); !nested {
		drain:
			for len(batch) < maxBatchCommands && size < maxBatchBytes {
				select {
				case pr := <-p.in:
					if _, nested := pr.cmd.(*fsm.Batch); nested {
						p.apply([]*proposal{pr})
						continue
					}
					batch = append(batch, pr)
					size += len(pr.data)
				default:
					break drain
				}
			}
		}
		p.apply(batch)
	}
}

// apply hands the batch to Raft and answers each proposal when it commits;
// the next batch is formed meanwhile.
func (p *proposer) apply(batch []*proposal) {
	data := batch[0].data
	if len(batch) > 1 {
		cmds := make([]fsm.Command, len(batch))
		for i, pr := range batch {
			cmds[i] = pr.cmd
		}
		data = fsm.Encode(&fsm.Batch{Commands: cmds})
	}
	f := p.a.raft.Apply(data, p.a.cfg.LeaderWait)
	go func() {
		err := f.Error()
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
