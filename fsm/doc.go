// Package fsm owns the replicated state of an orch cluster: the Raft log
// command format, the finite state machine that applies commands to an
// indexed in-memory store (go-memdb, one table per kind), snapshots, and the
// history of changes that watches are served from.
//
// Apply is deterministic: it never reads clocks, random numbers or map
// iteration order, and every object it writes carries the Raft index as its
// resourceVersion. Identities and timestamps are chosen by the proposer
// before a command reaches the log. Nothing outside Apply and Restore
// changes the state.
package fsm
