package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestNewCA(t *testing.T) {
	ca, err := pki.NewCA(pki.CAOptions{Name: "edge-1", Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	if !c.IsCA || !c.MaxPathLenZero || c.MaxPathLen != 0 || c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("CA constraints: IsCA=%v MaxPathLen=%d zero=%v usage=%v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero, c.KeyUsage)
	}
	if c.Subject.CommonName != "orch cluster CA edge-1" || !c.NotAfter.Equal(t0.Add(pki.DefaultCAValidity)) {
		t.Errorf("subject %q, not after %v", c.Subject.CommonName, c.NotAfter)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pki.Pool(c), CurrentTime: t0}); err != nil {
		t.Errorf("self-signed CA does not verify: %v", err)
	}
	if fp := pki.Fingerprint(c); len(fp) != 64 || strings.Trim(fp, "0123456789abcdef") != "" {
		t.Errorf("fingerprint %q is not 64 lowercase hex digits", fp)
	}
	if _, err := pki.NewCA(pki.CAOptions{}); err == nil {
		t.Error("NewCA without Now succeeded")
	}
}

func TestIssueNode(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	key, _ := pki.NewKey()
	req := pki.NodeRequest{Name: "srv-1.edge", IPs: []net.IP{net.ParseIP("10.0.0.11"), net.ParseIP("fd00::1")}, DNSNames: []string{"srv-1"}}
	for _, role := range []pki.Role{pki.RoleServer, pki.RoleWorker} {
		cert, err := ca.IssueNode(key.Public(), role, req, pki.IssueOptions{Now: time.Now(), Validity: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		id, err := pki.IdentityOf(cert)
		if err != nil || id.Role != role || id.Name != "srv-1.edge" || id.UserRole != "" || id.Serial == "" {
			t.Errorf("%s: identity %+v, %v", role, id, err)
		}
		if !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
			t.Errorf("%s: usages %v", role, cert.ExtKeyUsage)
		}
		if len(cert.IPAddresses) != 2 || len(cert.DNSNames) != 1 || cert.IsCA {
			t.Errorf("%s: SANs %v %v, IsCA %v", role, cert.IPAddresses, cert.DNSNames, cert.IsCA)
		}
		if life := cert.NotAfter.Sub(cert.NotBefore); life < time.Hour || life > time.Hour+10*time.Minute {
			t.Errorf("%s: lifetime %v", role, life)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pki.Pool(ca.Cert), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Errorf("%s: does not chain to the CA: %v", role, err)
		}
	}
	if _, err := ca.IssueNode(key.Public(), pki.RoleUser, req, pki.IssueOptions{Now: time.Now()}); !errors.Is(err, pki.ErrInvalidRequest) {
		t.Errorf("user role as node: %v", err)
	}
}

func TestIssueRefusals(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	key, _ := pki.NewKey()
	now := time.Now()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	ok := pki.NodeRequest{Name: "n1"}
	cases := []struct {
		name string
		pub  any
		req  pki.NodeRequest
		opts pki.IssueOptions
		want error
	}{
		{"upper case name", key.Public(), pki.NodeRequest{Name: "Node1"}, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"empty name", key.Public(), pki.NodeRequest{}, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"leading dash", key.Public(), pki.NodeRequest{Name: "-n"}, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"empty label", key.Public(), pki.NodeRequest{Name: "a..b"}, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"long label", key.Public(), pki.NodeRequest{Name: strings.Repeat("a", 64)}, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"slash", key.Public(), pki.NodeRequest{Name: "a/b"}, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"unspecified IP", key.Public(), pki.NodeRequest{Name: "n", IPs: []net.IP{net.IPv4zero}}, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"multicast IP", key.Public(), pki.NodeRequest{Name: "n", IPs: []net.IP{net.ParseIP("ff02::1")}}, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"wildcard DNS", key.Public(), pki.NodeRequest{Name: "n", DNSNames: []string{"*.x"}}, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"RSA key", &rsaKey.PublicKey, ok, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"P-224 key", &p224.PublicKey, ok, pki.IssueOptions{Now: now}, pki.ErrInvalidRequest},
		{"CA expired", key.Public(), ok, pki.IssueOptions{Now: ca.Cert.NotAfter}, pki.ErrCAExpired},
	}
	for _, c := range cases {
		if _, err := ca.IssueNode(c.pub, pki.RoleWorker, c.req, c.opts); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := (&pki.CA{Cert: ca.Cert}).IssueNode(key.Public(), pki.RoleWorker, ok, pki.IssueOptions{Now: now}); !errors.Is(err, pki.ErrNoCAKey) {
		t.Errorf("without CA key: %v", err)
	}
	if _, err := ca.IssueNode(key.Public(), pki.RoleWorker, ok, pki.IssueOptions{}); err == nil {
		t.Error("without Now: issued")
	}
}

func TestIssueCappedAtCAExpiry(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	key, _ := pki.NewKey()
	now := ca.Cert.NotAfter.Add(-24 * time.Hour)
	cert, err := ca.IssueNode(key.Public(), pki.RoleWorker, pki.NodeRequest{Name: "n"}, pki.IssueOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("leaf NotAfter %v outlives the CA's %v", cert.NotAfter, ca.Cert.NotAfter)
	}
}

func TestIssueUser(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	key, _ := pki.NewKey()
	cert, err := ca.IssueUser(key.Public(), "alice@example.com", pki.UserView, pki.IssueOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	id, err := pki.IdentityOf(cert)
	if err != nil || id.Role != pki.RoleUser || id.UserRole != pki.UserView || id.Name != "alice@example.com" {
		t.Errorf("identity %+v, %v", id, err)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("user certificate usages %v, want client auth only", cert.ExtKeyUsage)
	}
	if d := cert.NotAfter.Sub(time.Now()); d > pki.DefaultUserValidity || d < pki.DefaultUserValidity-time.Minute {
		t.Errorf("default user validity: %v", d)
	}
	for _, ur := range []pki.UserRole{"", "root", "Admin"} {
		if _, err := ca.IssueUser(key.Public(), "bob", ur, pki.IssueOptions{Now: time.Now()}); !errors.Is(err, pki.ErrInvalidRequest) {
			t.Errorf("role %q: %v", ur, err)
		}
	}
	if _, err := ca.IssueUser(key.Public(), "", pki.UserAdmin, pki.IssueOptions{Now: time.Now()}); !errors.Is(err, pki.ErrInvalidRequest) {
		t.Errorf("empty user name: %v", err)
	}
}

func TestNeedsRotation(t *testing.T) {
	ca, _ := pki.NewCA(pki.CAOptions{Now: t0})
	key, _ := pki.NewKey()
	cert, err := ca.IssueNode(key.Public(), pki.RoleWorker, pki.NodeRequest{Name: "n"}, pki.IssueOptions{Now: t0, Validity: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	at := cert.NotBefore.Add(life / 3 * 2)
	for _, c := range []struct {
		now  time.Time
		want bool
	}{
		{cert.NotBefore, false},
		{t0, false},
		{t0.Add(59 * 24 * time.Hour), false},
		{at.Add(-time.Second), false},
		{at, true},
		{t0.Add(61 * 24 * time.Hour), true},
		{cert.NotAfter.Add(time.Hour), true},
	} {
		if got := pki.NeedsRotation(cert, c.now); got != c.want {
			t.Errorf("NeedsRotation at %v = %v, want %v", c.now.Sub(t0), got, c.want)
		}
	}
}

func TestKeyPEM(t *testing.T) {
	key, _ := pki.NewKey()
	b, err := pki.KeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	back, err := pki.ParseKeyPEM(b)
	if err != nil || !key.Equal(back) {
		t.Fatalf("key round trip: %v", err)
	}
	if _, err := pki.ParseKeyPEM([]byte("junk")); err == nil {
		t.Error("parsed junk as a key")
	}
	ca := pkitest.NewCA(t, "c")
	if c, err := pki.ParseCertPEM(pki.CertPEM(ca.Cert)); err != nil || !c.Equal(ca.Cert) {
		t.Errorf("cert round trip: %v", err)
	}
	if _, err := pki.ParseCertPEM(append(pki.CertPEM(ca.Cert), pki.CertPEM(ca.Cert)...)); err == nil {
		t.Error("parsed two certificates as one")
	}
}
