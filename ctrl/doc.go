// Package ctrl is orch's controller manager: the level-triggered reconcile
// loops that run on the Raft leader only (ReplicaSet, Deployment, DaemonSet,
// node lifecycle, garbage collection, Endpoints), the Event recorder they
// share, and the deletion of Events past their TTL.
//
// Every controller compares desired state with observed state and acts on
// the difference. A reconcile always reads the leader's latest fsm.View,
// never a cached object, and writes through the same in-process API as any
// client (so through Raft). Because the leader applies a write to its own
// state before the write returns, and because a key is never reconciled by
// two workers at once, a reconcile always sees the effects of the previous
// one: no "expectations" bookkeeping is needed, and a new leader can start
// at any moment from nothing but the replicated state.
//
// ctrl must never mutate state except through the Cluster interface, keep
// state between reconciles that a new leader could not rebuild, or block
// the leader's shutdown: Run returns promptly when its context ends.
package ctrl
