package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
)

// Default certificate lifetimes. Nodes renew at two thirds of theirs
// (NeedsRotation); user certificates cannot be renewed without their owner,
// so they are short enough that a lost one stops working soon.
const (
	DefaultNodeValidity = 90 * 24 * time.Hour
	DefaultUserValidity = 30 * 24 * time.Hour
)

// Limits on what a certificate may name.
const (
	maxNameLen = 253
	maxSANs    = 32
)

var (
	// ErrInvalidRequest means a certificate request names something the CA
	// will not certify.
	ErrInvalidRequest = errors.New("invalid certificate request")
	// ErrCAExpired means the CA cannot issue a certificate valid now.
	ErrCAExpired = errors.New("the cluster CA has expired")
	// ErrNoCAKey means the CA's private key is not available here.
	ErrNoCAKey = errors.New("the cluster CA key is not available on this node")
)

// NodeRequest is what a node asks to be certified as: its name (the Raft
// server ID or Node name) and the addresses it is reached at.
type NodeRequest struct {
	Name     string
	IPs      []net.IP
	DNSNames []string
}

// IssueOptions configures one issued certificate.
type IssueOptions struct {
	Validity time.Duration // the role's default when zero
	Now      time.Time
}

// Validate checks a node request as the CA will: a DNS-1123 name, and
// host addresses only (no unspecified or multicast IPs).
func (r NodeRequest) Validate() error {
	if err := checkName(r.Name); err != nil {
		return fmt.Errorf("%w: node name: %v", ErrInvalidRequest, err)
	}
	if len(r.IPs)+len(r.DNSNames) > maxSANs {
		return fmt.Errorf("%w: more than %d addresses", ErrInvalidRequest, maxSANs)
	}
	for _, ip := range r.IPs {
		if len(ip) != net.IPv4len && len(ip) != net.IPv6len || ip.IsUnspecified() || ip.IsMulticast() {
			return fmt.Errorf("%w: address %v is not a host address", ErrInvalidRequest, ip)
		}
	}
	for _, d := range r.DNSNames {
		if err := checkName(d); err != nil {
			return fmt.Errorf("%w: DNS name: %v", ErrInvalidRequest, err)
		}
	}
	return nil
}

// checkName accepts a DNS-1123 subdomain, the rule for Kubernetes node names:
// dot-separated labels of 1 to 63 characters from a-z, 0-9 and '-', each
// starting and ending with a letter or digit.
func checkName(s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("%q must be 1 to %d characters", s, maxNameLen)
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q has an empty label or one longer than 63 characters", s)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q has a label starting or ending with '-'", s)
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q is not a lowercase DNS name (a-z, 0-9, '-', '.')", s)
			}
		}
	}
	return nil
}

// IssueNode certifies pub as a server or worker named in req, for both
// client and server authentication.
func (ca *CA) IssueNode(pub crypto.PublicKey, role Role, req NodeRequest, opts IssueOptions) (*x509.Certificate, error) {
	if !role.IsNode() {
		return nil, fmt.Errorf("%w: role %q is not a node role", ErrInvalidRequest, role)
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: req.Name},
		IPAddresses: req.IPs,
		DNSNames:    req.DNSNames,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(pub, role, tmpl, opts, DefaultNodeValidity)
}

// IssueUser certifies pub as user name with API role ur, for client
// authentication only.
func (ca *CA) IssueUser(pub crypto.PublicKey, name string, ur UserRole, opts IssueOptions) (*x509.Certificate, error) {
	if !ur.valid() {
		return nil, fmt.Errorf("%w: unknown user role %q (want admin, edit or view)", ErrInvalidRequest, ur)
	}
	if name == "" || len(name) > maxNameLen {
		return nil, fmt.Errorf("%w: user name must be 1 to %d characters", ErrInvalidRequest, maxNameLen)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name, Organization: []string{string(ur)}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(pub, RoleUser, tmpl, opts, DefaultUserValidity)
}

func (ca *CA) issue(pub crypto.PublicKey, role Role, tmpl *x509.Certificate, opts IssueOptions, def time.Duration) (*x509.Certificate, error) {
	if ca.Key == nil {
		return nil, ErrNoCAKey
	}
	if opts.Now.IsZero() {
		return nil, errors.New("pki: IssueOptions.Now is required")
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	validity := opts.Validity
	if validity <= 0 {
		validity = def
	}
	notAfter := opts.Now.Add(validity)
	// A certificate never outlives its issuer.
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !opts.Now.Before(notAfter) {
		return nil, ErrCAExpired
	}
	tmpl.SerialNumber = newSerial()
	tmpl.NotBefore = opts.Now.Add(-clockSkew)
	tmpl.NotAfter = notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	tmpl.URIs = append(tmpl.URIs, RoleURI(role))
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// checkPublicKey accepts the key types orch certifies: ECDSA P-256 or
// P-384, and Ed25519.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("%w: ECDSA curve %s (want P-256 or P-384)", ErrInvalidRequest, k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("%w: unsupported public key type %T (want ECDSA or Ed25519)", ErrInvalidRequest, pub)
}

// NeedsRotation reports whether cert has used two thirds of its lifetime
// at now (or has expired), the point at which a node asks for a new one:
// a third of the lifetime is left to retry through outages.
func NeedsRotation(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return !now.Before(cert.NotBefore.Add(life / 3 * 2))
}

// TLSCertificate assembles what a node presents in handshakes: its
// certificate followed by the CA's, so a peer that knows only the CA's
// fingerprint (a joining node) can verify the chain.
func TLSCertificate(cert *x509.Certificate, key crypto.Signer, ca *x509.Certificate) tls.Certificate {
	return tls.Certificate{
		Certificate: [][]byte{cert.Raw, ca.Raw},
		PrivateKey:  key,
		Leaf:        cert,
	}
}
