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
//
// Stored objects are immutable and may share what they did not change
// with the versions they replaced (a write copies the top-level struct,
// not the whole object). What the pods on each node take (usage.go) is
// derived state kept by the apply goroutine, like an index: snapshots
// leave it out and Restore rebuilds it.
package fsm
