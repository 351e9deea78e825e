package pki_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"testing"

	"orch.dev/orch/internal/pki"
)

func csrPEM(t *testing.T, key any, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestCSRRoundTrip(t *testing.T) {
	key, _ := pki.NewKey()
	want := pki.NodeRequest{Name: "w1", IPs: []net.IP{net.ParseIP("10.0.0.21").To4()}, DNSNames: []string{"w1.site"}}
	b, err := pki.NewCSR(key, want)
	if err != nil {
		t.Fatal(err)
	}
	csr, got, err := pki.ParseCSR(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "w1" || len(got.IPs) != 1 || !got.IPs[0].Equal(want.IPs[0]) || len(got.DNSNames) != 1 || got.DNSNames[0] != "w1.site" {
		t.Errorf("request %+v", got)
	}
	if !key.PublicKey.Equal(csr.PublicKey) {
		t.Error("public key changed")
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	if _, _, err := pki.ParseCSR(csrPEM(t, edKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "e"}})); err != nil {
		t.Errorf("Ed25519 request refused: %v", err)
	}
	if _, err := pki.NewCSR(key, pki.NodeRequest{Name: "Bad Name"}); !errors.Is(err, pki.ErrInvalidRequest) {
		t.Errorf("NewCSR with a bad name: %v", err)
	}
}

func TestParseCSRRefuses(t *testing.T) {
	key, _ := pki.NewKey()
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	good := csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n"}})
	block, _ := pem.Decode(good)
	tampered := append([]byte(nil), block.Bytes...)
	tampered[len(tampered)-3] ^= 1 // inside the signature
	serverURI, _ := url.Parse("orch://role/server")
	cases := map[string][]byte{
		"empty":             nil,
		"not PEM":           []byte("hello"),
		"wrong PEM type":    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}),
		"trailing data":     append(append([]byte(nil), good...), "junk"...),
		"not DER":           pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{1, 2, 3}}),
		"bad signature":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: tampered}),
		"RSA key":           csrPEM(t, rsaKey, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n"}}),
		"role URI smuggled": csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n"}, URIs: []*url.URL{serverURI}}),
		"e-mail SAN":        csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n"}, EmailAddresses: []string{"a@b"}}),
		"organization":      csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n", Organization: []string{"admin"}}}),
		"OU":                csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n", OrganizationalUnit: []string{"server"}}}),
		"no name":           csrPEM(t, key, &x509.CertificateRequest{}),
		"bad name":          csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "../etc"}}),
		"extra extension": csrPEM(t, key, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "n"},
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}}}}),
		"too large": append(append([]byte(nil), good...), make([]byte, 20<<10)...),
	}
	for name, b := range cases {
		if _, _, err := pki.ParseCSR(b); !errors.Is(err, pki.ErrInvalidRequest) {
			t.Errorf("%s: got %v, want ErrInvalidRequest", name, err)
		}
	}
}
