// Package api is the glue between orch and the Kubernetes object types it stores.
//
// It owns the registry of supported kinds (their REST names, scopes and
// constructors), manifest decoding, defaulting, validation (including the
// allowlist of supported fields) and field selectors. It holds no state and
// performs no I/O: the API server, the FSM and orchctl all build on it, so one
// definition of "a valid Deployment" serves every path into the cluster.
package api
