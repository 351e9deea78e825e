// Package conformance holds the proxy's conformance suite: one set of
// scenarios (split between endpoints, readiness, removal with draining,
// deletion, restart, ClientIP affinity, hairpin, no endpoints, NodePort)
// run with real traffic against each backend, in network namespaces the
// test creates and removes. The suite lives in the _test files; see
// proxy/README.md for how the IPVS run boots a kernel that has IPVS.
package conformance
