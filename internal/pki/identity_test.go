package pki_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

// forge signs a hand-made template with the CA, to check that IdentityOf
// refuses encodings the CA itself never produces.
func forge(t *testing.T, ca *pki.CA, cn string, orgs []string, uris ...string) *x509.Certificate {
	t.Helper()
	key, _ := pki.NewKey()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestIdentityOf(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	cases := []struct {
		name string
		cert *x509.Certificate
		want pki.Identity // zero when refused
	}{
		{"server", forge(t, ca, "s1", nil, "orch://role/server"), pki.Identity{Role: pki.RoleServer, Name: "s1"}},
		{"user", forge(t, ca, "al", []string{"edit"}, "orch://role/user"), pki.Identity{Role: pki.RoleUser, Name: "al", UserRole: pki.UserEdit}},
		{"other URIs ignored", forge(t, ca, "w", nil, "spiffe://x/y", "orch://role/worker"), pki.Identity{Role: pki.RoleWorker, Name: "w"}},
		{"no role", forge(t, ca, "s1", nil), pki.Identity{}},
		{"two roles", forge(t, ca, "s1", nil, "orch://role/worker", "orch://role/server"), pki.Identity{}},
		{"same role twice", forge(t, ca, "s1", nil, "orch://role/server", "orch://role/server"), pki.Identity{}},
		{"unknown role", forge(t, ca, "s1", nil, "orch://role/root"), pki.Identity{}},
		{"odd orch URI", forge(t, ca, "s1", nil, "orch://admin/server"), pki.Identity{}},
		{"role with query", forge(t, ca, "s1", nil, "orch://role/server?x=1"), pki.Identity{}},
		{"empty role", forge(t, ca, "s1", nil, "orch://role/"), pki.Identity{}},
		{"node with organization", forge(t, ca, "w", []string{"admin"}, "orch://role/worker"), pki.Identity{}},
		{"user without role", forge(t, ca, "al", nil, "orch://role/user"), pki.Identity{}},
		{"user with two roles", forge(t, ca, "al", []string{"view", "admin"}, "orch://role/user"), pki.Identity{}},
		{"user with unknown role", forge(t, ca, "al", []string{"system:masters"}, "orch://role/user"), pki.Identity{}},
		{"empty name", forge(t, ca, "", nil, "orch://role/worker"), pki.Identity{}},
	}
	for _, c := range cases {
		id, err := pki.IdentityOf(c.cert)
		if c.want.Role == "" {
			if !errors.Is(err, pki.ErrIdentity) {
				t.Errorf("%s: got %+v, %v; want ErrIdentity", c.name, id, err)
			}
			continue
		}
		if err != nil || id.Role != c.want.Role || id.Name != c.want.Name || id.UserRole != c.want.UserRole || id.Serial != "7" {
			t.Errorf("%s: got %+v, %v; want %+v", c.name, id, err, c.want)
		}
	}
}
