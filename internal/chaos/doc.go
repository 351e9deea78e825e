// Package chaos is orch's fault-injection suite. It runs real orchd
// servers (and simulated workers) as separate hosts, each in a network
// namespace of its own on one bridge, drives them with concurrent
// compare-and-set clients through the Go client, injects named faults
// (kill -9, SIGSTOP, partitions, asymmetric partitions, a full disk, a
// restart of everything) and checks what must hold whatever happens:
// the clients' histories are linearizable (porcupine, one versioned
// register per ConfigMap), no acknowledged write is lost, there is at most
// one leader per Raft term, and every server's state machine converges to
// the same state.
//
// The harness owns everything it creates — namespaces, veths, the bridge,
// nftables tables, mounts, processes, directories — and removes it when a
// test ends, fails or is interrupted; leftovers of a crashed run are found
// by their names and removed at the next start. It never touches the
// product's code or state except through the API and the processes'
// command lines, and it never sends traffic outside the namespaces and the
// bridge it made. It needs root (network namespaces, nftables, mounts); a
// test skips itself without it.
package chaos
