// Package sched is orch's scheduler: it decides which node each pending pod
// runs on.
//
// The placement itself is a pure function, Schedule, from a Snapshot of the
// cluster (nodes, the pods they hold, namespace labels) and an ordered list
// of pending pods to a Plan: bindings, unschedulable pods with a
// kube-scheduler style explanation, and preemptions. It is built from small
// Filter and Score plugins (framework.go, plugin_*.go) and breaks ties with
// a seeded random source, so a plan is reproducible.
//
// Run is the leader-only loop around it: it keeps a cache of the cluster
// from the FSM's View and History, orders pending pods in a Queue (priority,
// then round-robin between namespaces, then FIFO), proposes each plan as a
// single fsm.Bind entry, and reports unschedulable pods through their
// PodScheduled condition and Events.
//
// The scheduler never writes anything except through Raft, never runs on a
// follower, and never trusts its own view over the FSM's: every binding is
// re-checked when it is applied (sched/fit holds the predicates both use),
// and refused bindings are simply retried.
package sched
