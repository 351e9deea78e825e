// Package dns is orch's cluster DNS (the "kube-dns"/CoreDNS of Kubernetes):
// an embedded DNS server that runs on every node and answers pods' queries.
//
// It owns three things:
//   - Store: an in-memory index of Services and Endpoints, fed by Watch (stale
//     reads from any API server) or by its On*/Replace* methods, from which
//     names under the cluster zone (default cluster.local) are answered:
//     A for <svc>.<ns>.svc (the ClusterIP, or the ready endpoint IPs of a
//     headless Service), SRV for _<port>._<proto>.<svc>.<ns>.svc, A for the
//     endpoints of headless Services (<hostname or a-b-c-d>.<svc>.<ns>.svc),
//     A for <a-b-c-d>.<ns>.pod, and PTR for ClusterIPs and headless endpoint
//     IPs. Names in the zone that do not exist get NXDOMAIN with the zone's
//     SOA; names that exist get an empty NOERROR answer for other types
//     (AAAA included: the cluster is IPv4 only).
//   - Server: UDP and TCP listeners on one address and port (the pod bridge's
//     gateway, port 53, on a worker), answering from the Store and
//     forwarding every other name to the node's upstream resolvers (from
//     /etc/resolv.conf), over UDP with a TCP retry when the answer is
//     truncated; SERVFAIL when no upstream answers.
//   - PodResolvConfig/ResolvConf: what a pod's /etc/resolv.conf says, from
//     its dnsPolicy and dnsConfig, as the kubelet computes it.
//
// It never writes cluster state, never forwards a name of the cluster zone
// (it answers those itself, or SERVFAIL until it has listed Services and
// Endpoints once, so pods never cache a false NXDOMAIN after a restart), and
// never lists its own address among the upstreams it forwards to.
package dns
