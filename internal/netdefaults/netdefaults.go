// Package netdefaults holds the cluster's network defaults (DESIGN.md,
// "Network defaults"): the ports and address ranges that servers, workers
// and simulators agree on. It is constants only and imports nothing of
// orch, so that the worker binary can share them without linking the
// server (fsm, agent).
package netdefaults

import "net/netip"

// Default ports.
const (
	HTTPPort   = 7400 // the API
	RaftPort   = 7401
	GossipPort = 7402 // TCP and UDP
	WorkerPort = 7403 // the worker API (logs, exec)
)

// PodCIDR is the range pod networks are cut from, one /24 per node. It is
// a cluster-wide constant: every server must allocate identically.
var PodCIDR = netip.MustParsePrefix("10.244.0.0/16")

// ServiceCIDR is the range service virtual IPs come from.
var ServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")
