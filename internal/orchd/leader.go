package orchd

import (
	"context"
	"time"

	"orch.dev/orch/agent"
	"orch.dev/orch/ctrl"
	"orch.dev/orch/sched"
)

// LeaderOptions tune the components that run on the Raft leader.
type LeaderOptions struct {
	Scheduler   sched.Options
	Controllers ctrl.Options
}

// RegisterLeaderComponents makes a run the scheduler and the controllers
// whenever it is the Raft leader (after its barrier); both stop the moment
// leadership is lost. Call it before a.Start.
func RegisterLeaderComponents(a *agent.Agent, opts LeaderOptions) {
	a.OnLeader(func(ctx context.Context, a *agent.Agent) {
		// The scheduler rebuilds its state from the FSM when it starts, so
		// an unexpected error costs a restart, never the rest of the term.
		for {
			err := sched.Run(ctx, a, opts.Scheduler)
			if ctx.Err() != nil {
				return
			}
			a.Logger().Error("scheduler stopped; restarting", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	})
	a.OnLeader(func(ctx context.Context, a *agent.Agent) {
		ctrl.Run(ctx, a, opts.Controllers)
	})
}
