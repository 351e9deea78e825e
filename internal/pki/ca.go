package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// DefaultCAValidity is the lifetime of a new cluster CA. The CA is not
// rotated automatically; a decade outlives the hardware of an edge site.
const DefaultCAValidity = 10 * 365 * 24 * time.Hour

// clockSkew backdates NotBefore so a certificate is valid at once on a node
// whose clock is a little behind the issuer's.
const clockSkew = 5 * time.Minute

// CA is the cluster certificate authority: its certificate and, on servers,
// its private key (nil where only the certificate is known).
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// CAOptions configures NewCA.
type CAOptions struct {
	// Name identifies the cluster in the CA's common name ("orch cluster CA <Name>").
	Name     string
	Validity time.Duration // DefaultCAValidity when zero
	Now      time.Time
}

// NewCA creates a cluster CA with a fresh P-256 key.
func NewCA(opts CAOptions) (*CA, error) {
	if opts.Now.IsZero() {
		return nil, errors.New("pki: CAOptions.Now is required")
	}
	if opts.Validity == 0 {
		opts.Validity = DefaultCAValidity
	}
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	cn := "orch cluster CA"
	if opts.Name != "" {
		cn += " " + opts.Name
	}
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"orch"}},
		NotBefore:             opts.Now.Add(-clockSkew),
		NotAfter:              opts.Now.Add(opts.Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		// Only leaves below the CA: no intermediate can ever be minted
		// with a stolen leaf key.
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key}, nil
}

// NewKey generates a P-256 private key for a CA or a node.
func NewKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

// newSerial returns a random positive 127-bit serial number (RFC 5280 allows
// up to 20 octets; randomness keeps serials unpredictable and unique).
func newSerial() *big.Int {
	b := make([]byte, 16)
	rand.Read(b)
	b[0] &= 0x7f
	b[0] |= 0x40 // never short: every serial encodes in exactly 16 octets
	return new(big.Int).SetBytes(b)
}

// Fingerprint is the lowercase hex SHA-256 of cert's SubjectPublicKeyInfo,
// the form join tokens pin. It is what
//
//	openssl x509 -in ca.pem -pubkey -noout | openssl pkey -pubin -outform der | sha256sum
//
// prints, and it survives re-issuing the CA certificate with the same key.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// Pool returns a pool holding only cert.
func Pool(cert *x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(cert)
	return p
}

// CertPEM encodes cert as a PEM CERTIFICATE block.
func CertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// ParseCertPEM decodes exactly one PEM CERTIFICATE block.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("pki: not a PEM CERTIFICATE")
	}
	if len(pemTrim(rest)) != 0 {
		return nil, errors.New("pki: trailing data after the PEM CERTIFICATE")
	}
	return x509.ParseCertificate(block.Bytes)
}

// KeyPEM encodes key as a PEM PRIVATE KEY (PKCS #8) block, for a node's
// own key file (mode 0600). The CA key is never written this way: see Seal.
func KeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM decodes a PEM PRIVATE KEY (PKCS #8) block holding an ECDSA or
// Ed25519 key.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("pki: not a PEM PRIVATE KEY")
	}
	return parsePKCS8Signer(block.Bytes)
}

func parsePKCS8Signer(der []byte) (crypto.Signer, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: unsupported private key type %T", k)
	}
	if err := checkPublicKey(s.Public()); err != nil {
		return nil, err
	}
	return s, nil
}

func pemTrim(b []byte) []byte {
	for len(b) > 0 && (b[0] == '\n' || b[0] == '\r' || b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
