package join

import (
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

// FuzzCheckResponse feeds arbitrary certificate and CA PEM to the joining
// node's check of a server's answer: no panic, and nothing is accepted
// unless it is a worker certificate for the node's key and name, issued by
// the pinned CA.
func FuzzCheckResponse(f *testing.F) {
	ca := pkitest.NewCA(f, "c")
	key, err := pki.NewKey()
	if err != nil {
		f.Fatal(err)
	}
	good, err := ca.IssueNode(key.Public(), pki.RoleWorker, pki.NodeRequest{Name: "w1"}, pki.IssueOptions{Now: time.Now()})
	if err != nil {
		f.Fatal(err)
	}
	caPEM, goodPEM := string(pki.CertPEM(ca.Cert)), string(pki.CertPEM(good))
	caHash := pki.Fingerprint(ca.Cert)
	f.Add(goodPEM, caPEM)
	f.Add(goodPEM+goodPEM, caPEM)
	f.Add(caPEM, caPEM)
	f.Add(goodPEM, goodPEM)
	f.Add("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", caPEM)
	f.Add("", "")
	f.Fuzz(func(t *testing.T, certPEM, caPEMIn string) {
		res, err := checkResponse(Response{Certificate: certPEM, CA: caPEMIn}, caHash, pki.RoleWorker, key, "w1")
		if err != nil {
			return
		}
		if res.Cert.Subject.CommonName != "w1" || pki.Fingerprint(res.CA) != caHash {
			t.Fatalf("accepted a certificate for %q under CA %s", res.Cert.Subject.CommonName, pki.Fingerprint(res.CA))
		}
	})
}
