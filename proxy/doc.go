// Package proxy is orch's service proxy (the "kube-proxy"): it turns Services
// and Endpoints into virtual-server rules on one node and keeps the kernel in
// step with them.
//
// It owns three things:
//   - Compute: a pure function from Services + Endpoints (k8s core/v1 types)
//     to the desired RuleSet, one VirtualServer per ClusterIP:port/proto and
//     per NodePort/proto;
//   - Diff: the difference between two RuleSets, the only thing a Backend is
//     ever asked to apply (no flush-and-rebuild on each change);
//   - Proxier: takes Service/Endpoints updates, coalesces them, recomputes
//     only the Services that changed (model), drains removed endpoints
//     (weight 0) before deleting them, and syncs through a Backend,
//     reconciling with what the kernel holds when it starts and checking it
//     cheaply for drift afterwards (Checker).
//
// The kernel programming lives in the backends, proxy/nft (nftables) and
// proxy/ipvs (IPVS + nftables for masquerading); Mode picks one.
//
// The proxy never writes cluster state, never allocates ClusterIPs or
// NodePorts (the FSM does) and never touches kernel objects it does not own
// (its own nft tables, its own IPVS virtual servers and dummy interface).
// IPv4 only for now: IPv6 service addresses are skipped by Compute.
package proxy
