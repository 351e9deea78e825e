// Package pki owns orch's cluster certificate authority: the CA created once
// at bootstrap, the certificates it issues to servers, workers and users, the
// sealed (encrypted) form of the CA key that is replicated through Raft, and
// the tls.Configs every orch connection uses.
//
// Identity model. Every certificate the CA issues carries exactly one role
// URI SAN, orch://role/server, orch://role/worker or orch://role/user, and
// its Subject CommonName is the node or user name. A user certificate also
// carries exactly one Organization, its API role (admin, edit or view), as
// Kubernetes encodes groups; node certificates carry none, so nothing that
// reads Organization alone can mistake a node for an administrator.
// IdentityOf is the one parser of that encoding.
//
// Keys are ECDSA P-256 throughout. Ed25519 would be as fast and simpler, but
// P-256 is what every TLS client an operator may point at the API speaks
// (curl on old OpenSSL, browsers, language runtimes), what TPMs and PKCS#11
// tokens on edge hardware can hold, and what FIPS deployments accept; Go's
// P-256 is constant time and assembly-backed on amd64 and arm64.
//
// TLS is 1.3 only (the key exchange includes X25519MLKEM768 by default).
// Peers are checked against the cluster CA alone, never the system roots,
// and by role, never by host name: every server certificate is equally
// trusted, so the identity that matters is "a server of this cluster", and
// nodes keep working when reached through another address than the one in
// their certificate.
//
// This package must never log, persist or return the CA key in clear, and
// never read a clock: callers pass the time in, so issuing and rotation
// decisions are testable and happen before anything is proposed to Raft.
package pki
