// Package join owns how a server or worker gets and keeps its certificate:
// join tokens, the records the cluster keeps of them, the join handshake
// that turns a token and a certificate request into a node certificate
// (Handler and Join), and renewal authenticated by the current certificate
// (RenewHandler and Renew), which nodes call once pki.NeedsRotation says so.
//
// Token format (version 1), 120 characters, printed by
// `orchctl operator token create`:
//
//	orch1.<id>.<secret>.<ca>
//
//	orch1   format and version
//	id      16 lowercase hex digits (64 random bits): names the token in
//	        listings, logs and revocation; not secret
//	secret  32 lowercase hex digits (128 random bits): the credential
//	ca      64 lowercase hex digits: SHA-256 of the cluster CA's
//	        SubjectPublicKeyInfo (pki.Fingerprint)
//
// Dots separate the parts so a token is one shell word and one double-click.
// The CA part lets a joining node that knows nothing else authenticate the
// server before it reveals the secret: it accepts only a server whose chain
// leads to a CA with exactly that public key, so an impostor on the network
// gets neither the secret nor the node's trust. Role, expiry and the
// single-use flag are not in the token: the cluster's record of it
// (Record) is the authority, and it holds only a hash of the secret.
//
// The package must never log, store or put in an error a token's secret:
// Token.Redacted is the form for logs.
package join
