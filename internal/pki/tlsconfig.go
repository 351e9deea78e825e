package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Certs holds a node's current certificate. Set swaps it in for every
// handshake that follows, so rotation needs no restart and drops no
// connection (established ones keep the certificate they started with).
type Certs struct {
	p atomic.Pointer[tls.Certificate]
}

// NewCerts returns a holder presenting c.
func NewCerts(c tls.Certificate) *Certs {
	h := &Certs{}
	h.Set(c)
	return h
}

// Set replaces the certificate presented from now on.
func (h *Certs) Set(c tls.Certificate) { h.p.Store(&c) }

// Current returns the certificate presented now.
func (h *Certs) Current() *tls.Certificate { return h.p.Load() }

func (h *Certs) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return h.Current(), nil
}

func (h *Certs) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return h.Current(), nil
}

// Policy says which peers a connection accepts, beyond "certified by the
// cluster CA".
type Policy struct {
	// Roles the peer may hold; any role when empty.
	Roles []Role
	// Check, when set, runs last and may refuse a verified peer: the hook
	// for deny lists (removed nodes, revoked serials), since the CA
	// publishes no revocation lists.
	Check func(Identity) error
	// ClientCertOptional lets a server accept clients that present no
	// certificate (they authenticate another way, e.g. a bearer token or a
	// join token); a certificate that is presented must still verify.
	ClientCertOptional bool
	// Now is the verification time; time.Now when nil.
	Now func() time.Time
}

var (
	// ErrUntrusted means the peer's certificate does not chain to the CA.
	ErrUntrusted = errors.New("peer certificate is not issued by the cluster CA")
	// ErrPeerRole means the peer is certified, but not for this connection.
	ErrPeerRole = errors.New("peer certificate does not carry a role allowed here")
	// ErrCAMismatch means a server presented no CA with the pinned fingerprint.
	ErrCAMismatch = errors.New("server does not present the pinned cluster CA (impostor server, or a token from another cluster)")
)

// VerifyPeer verifies a peer's certificate chain (leaf first, as in
// tls.ConnectionState.PeerCertificates) against roots, checks that the
// leaf is valid for every usage in usages, and applies p.
func VerifyPeer(chain []*x509.Certificate, roots *x509.CertPool, usages []x509.ExtKeyUsage, p Policy) (Identity, error) {
	if len(chain) == 0 {
		return Identity{}, fmt.Errorf("%w: no certificate presented", ErrUntrusted)
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if p.Now != nil {
		opts.CurrentTime = p.Now()
	}
	if _, err := leaf.Verify(opts); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	return checkLeaf(leaf, usages, p)
}

// checkLeaf applies usages and p to a leaf whose chain is verified.
func checkLeaf(leaf *x509.Certificate, usages []x509.ExtKeyUsage, p Policy) (Identity, error) {
	// x509 accepts a chain valid for any one usage asked for; a peer
	// certificate must be valid for all of them.
	for _, u := range usages {
		if !slices.Contains(leaf.ExtKeyUsage, u) {
			return Identity{}, fmt.Errorf("%w: certificate of %q is not valid for %s", ErrPeerRole, leaf.Subject.CommonName, usageName(u))
		}
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return id, err
	}
	if len(p.Roles) > 0 && !slices.Contains(p.Roles, id.Role) {
		return id, fmt.Errorf("%w: %s %q (want %s)", ErrPeerRole, id.Role, id.Name, rolesString(p.Roles))
	}
	if p.Check != nil {
		if err := p.Check(id); err != nil {
			return id, err
		}
	}
	return id, nil
}

// verifyConn applies VerifyPeer to a handshake. Where the TLS stack has
// already verified the chain against the pool (a server, whose ClientCAs
// hold only the cluster CA, verifying its client), the chain is not verified
// a second time: each ECDSA verification is a tenth of a handshake's CPU.
// Usages, identity and policy are always checked here.
func verifyConn(cs tls.ConnectionState, pool *x509.CertPool, usages []x509.ExtKeyUsage, p Policy) error {
	if len(cs.VerifiedChains) > 0 && len(cs.VerifiedChains[0]) > 0 {
		_, err := checkLeaf(cs.VerifiedChains[0][0], usages, p)
		return err
	}
	_, err := VerifyPeer(cs.PeerCertificates, pool, usages, p)
	return err
}

// ServerConfig is for a server that requires (or, with
// p.ClientCertOptional, accepts) client certificates from the cluster CA.
func ServerConfig(ca *x509.Certificate, certs *Certs, p Policy) *tls.Config {
	pool := Pool(ca)
	cfg := baseConfig(p)
	cfg.GetCertificate = certs.getCertificate
	cfg.ClientCAs = pool
	cfg.ClientAuth = tls.RequireAndVerifyClientCert
	if p.ClientCertOptional {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 && p.ClientCertOptional {
			return nil
		}
		return verifyConn(cs, pool, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, p)
	}
	return cfg
}

// ClientConfig is for a client that trusts only the cluster CA and checks
// the server's role (p.Roles, usually RoleServer) instead of its host name.
// certs may be nil for a client without a certificate.
func ClientConfig(ca *x509.Certificate, certs *Certs, p Policy) *tls.Config {
	pool := Pool(ca)
	cfg := baseConfig(p)
	if certs != nil {
		cfg.GetClientCertificate = certs.getClientCertificate
	}
	// Go's own verification checks host names, which orch does not use;
	// VerifyConnection does the full chain, usage and role verification
	// instead, on every handshake including resumed ones.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		_, err := VerifyPeer(cs.PeerCertificates, pool, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, p)
		return err
	}
	return cfg
}

// PeerConfig is for connections between nodes that are both client and
// server (Raft): usable with tls.Server and tls.Client alike, it presents
// certs and requires a peer certificate valid for both usages.
func PeerConfig(ca *x509.Certificate, certs *Certs, p Policy) *tls.Config {
	p.ClientCertOptional = false
	cfg := ServerConfig(ca, certs, p)
	cfg.GetClientCertificate = certs.getClientCertificate
	cfg.InsecureSkipVerify = true // client side: verified below, by role not host name
	pool := cfg.ClientCAs
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		return verifyConn(cs, pool, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, p)
	}
	return cfg
}

// PinnedClientConfig is for a node that knows only the cluster CA's
// fingerprint (from a join token): the server must present, after its own
// certificate, a CA certificate with exactly that fingerprint, and its
// certificate must chain to that CA and satisfy p. System roots play no part.
func PinnedClientConfig(fingerprint string, p Policy) *tls.Config {
	cfg := baseConfig(p)
	cfg.InsecureSkipVerify = true // verified below, against the pinned CA only
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		ca, err := PinnedCA(cs.PeerCertificates, fingerprint)
		if err != nil {
			return err
		}
		_, err = VerifyPeer(cs.PeerCertificates, Pool(ca), []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, p)
		return err
	}
	return cfg
}

// PinnedCA finds, among the certificates a server presented after its own,
// the CA whose fingerprint is fingerprint.
func PinnedCA(chain []*x509.Certificate, fingerprint string) (*x509.Certificate, error) {
	var seen []string
	for i, c := range chain {
		if i == 0 || !c.IsCA || !c.BasicConstraintsValid {
			continue
		}
		fp := Fingerprint(c)
		if fp == fingerprint {
			return c, nil
		}
		seen = append(seen, fp)
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("%w: it presented no CA certificate", ErrCAMismatch)
	}
	return nil, fmt.Errorf("%w: want CA %s, server presented %s", ErrCAMismatch, fingerprint, strings.Join(seen, ", "))
}

// PeerIdentity is the identity of the client on the server side of a
// connection made with ServerConfig or PeerConfig, if it presented a
// certificate (with ClientCertOptional it may not have). Only chains the
// TLS stack verified against the CA count.
func PeerIdentity(cs *tls.ConnectionState) (Identity, bool) {
	if cs == nil || !cs.HandshakeComplete || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	id, err := IdentityOf(cs.VerifiedChains[0][0])
	return id, err == nil
}

func baseConfig(p Policy) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Time: p.Now}
}

func rolesString(rs []Role) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = string(r)
	}
	return strings.Join(s, " or ")
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "server authentication"
	case x509.ExtKeyUsageClientAuth:
		return "client authentication"
	}
	return fmt.Sprintf("usage %d", u)
}
