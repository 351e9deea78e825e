// Package pkitest builds cluster CAs and certificates for tests of the
// packages that use internal/pki. Only _test.go files may import it.
package pkitest

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
)

// Holder is a certificate with its key, ready to present in handshakes.
type Holder struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Certs *pki.Certs
}

// TLS is what the holder presents.
func (h *Holder) TLS() tls.Certificate { return *h.Certs.Current() }

// NewCA creates a CA named name, valid from now.
func NewCA(t testing.TB, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(pki.CAOptions{Name: name, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// Node issues a node certificate for name on loopback.
func Node(t testing.TB, ca *pki.CA, role pki.Role, name string) *Holder {
	t.Helper()
	return NodeAt(t, ca, role, name, time.Now(), 0)
}

// NodeAt issues a node certificate for name at now with the given validity
// (the default when zero).
func NodeAt(t testing.TB, ca *pki.CA, role pki.Role, name string, now time.Time, validity time.Duration) *Holder {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	req := pki.NodeRequest{Name: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"}}
	cert, err := ca.IssueNode(key.Public(), role, req, pki.IssueOptions{Now: now, Validity: validity})
	if err != nil {
		t.Fatal(err)
	}
	return &Holder{Cert: cert, Key: key, Certs: pki.NewCerts(pki.TLSCertificate(cert, key, ca.Cert))}
}

// User issues a user certificate.
func User(t testing.TB, ca *pki.CA, name string, ur pki.UserRole) *Holder {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueUser(key.Public(), name, ur, pki.IssueOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	return &Holder{Cert: cert, Key: key, Certs: pki.NewCerts(pki.TLSCertificate(cert, key, ca.Cert))}
}
