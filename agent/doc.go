// Package agent is orchd: the process that runs on every machine of a
// cluster. On a server it owns the Raft node (hashicorp/raft over
// raft-boltdb), gossip membership (memberlist), bootstrap, the
// Kubernetes-shaped HTTP API with leader forwarding and linearizable reads,
// and the leader-only loops. It changes cluster state only by proposing log
// commands to Raft; the fsm package applies them.
package agent
