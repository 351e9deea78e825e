package join

import (
	"context"
	"crypto"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

func renewServer(t *testing.T, ca *pki.CA) string {
	t.Helper()
	var hits atomic.Int32
	h := RenewHandler(RenewConfig{
		CA:     func() (*pki.CA, error) { return ca, nil },
		Logger: quiet,
		Authorize: func(_ *http.Request, id pki.Identity, _ pki.NodeRequest) error {
			if id.Name == "removed" {
				return errors.New("node removed was deleted")
			}
			return nil
		},
	})
	return serve(t, ca, pkitest.Node(t, ca, pki.RoleServer, "s1"), h, &hits)
}

func renewAs(addr string, ca *pki.CA, h *pkitest.Holder, role pki.Role, name string) (*Result, error) {
	res, _, err := renewKey(addr, ca, h, role, name)
	return res, err
}

func renewKey(addr string, ca *pki.CA, h *pkitest.Holder, role pki.Role, name string) (*Result, crypto.Signer, error) {
	key, _ := pki.NewKey()
	var certs *pki.Certs
	if h != nil {
		certs = h.Certs
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Renew(ctx, RenewOptions{Addr: addr, CA: ca.Cert, Certs: certs, Role: role, Key: key,
		Node: pki.NodeRequest{Name: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}})
	return res, key, err
}

func TestRenew(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	addr := renewServer(t, ca)
	for _, role := range []pki.Role{pki.RoleWorker, pki.RoleServer} {
		h := pkitest.Node(t, ca, role, "n1")
		for range 2 { // renew, then renew with the renewed certificate
			res, key, err := renewKey(addr, ca, h, role, "n1")
			if err != nil {
				t.Fatalf("%s: %v", role, err)
			}
			if res.Cert.SerialNumber.Cmp(h.Cert.SerialNumber) == 0 {
				t.Fatalf("%s: same certificate back", role)
			}
			id, _ := pki.IdentityOf(res.Cert)
			if id.Role != role || id.Name != "n1" {
				t.Fatalf("%s: renewed as %+v", role, id)
			}
			h.Cert, h.Key = res.Cert, key
			h.Certs.Set(pki.TLSCertificate(res.Cert, key, res.CA))
		}
	}
}

func TestRenewRefused(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	evil := pkitest.NewCA(t, "evil")
	addr := renewServer(t, ca)
	worker := pkitest.Node(t, ca, pki.RoleWorker, "w1")
	expired := pkitest.NodeAt(t, ca, pki.RoleWorker, "w1", time.Now().Add(-2*time.Hour), time.Hour)

	cases := []struct {
		name   string
		holder *pkitest.Holder
		as     string
		want   string
	}{
		{"no certificate", nil, "w1", "needs the node's current certificate"},
		{"another node's name", worker, "w2", `may renew only its own certificate, not "w2"'s`},
		{"user certificate", pkitest.User(t, ca, "alice", pki.UserAdmin), "alice", "needs the node's current certificate"},
		{"removed node", pkitest.Node(t, ca, pki.RoleWorker, "removed"), "removed", "node removed was deleted"},
		{"expired certificate", expired, "w1", "expired certificate"},
		{"certificate from another CA", pkitest.Node(t, evil, pki.RoleWorker, "w1"), "w1", "unknown certificate authority"},
	}
	for _, c := range cases {
		_, err := renewAs(addr, ca, c.holder, pki.RoleWorker, c.as)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}
