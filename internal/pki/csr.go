package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
)

// maxCSRSize bounds a PEM certificate request before it is parsed.
const maxCSRSize = 16 << 10

// NewCSR builds a PEM CERTIFICATE REQUEST for req signed by key: the proof
// that the requester holds the key it wants certified. The CA takes only the
// public key, the name and the addresses from it; role and usages are its own.
func NewCSR(key crypto.Signer, req NodeRequest) ([]byte, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: req.Name},
		IPAddresses: req.IPs,
		DNSNames:    req.DNSNames,
	}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR decodes and checks a PEM certificate request from a node: its
// signature must verify (proof of possession), its key must be of a
// supported type, and it may ask only for a name and addresses. Anything
// else a request could carry (e-mail or URI SANs, an Organization, other
// subject fields, extensions) is refused rather than ignored, so no request
// can smuggle a role or an API group past the CA.
func ParseCSR(b []byte) (*x509.CertificateRequest, NodeRequest, error) {
	var req NodeRequest
	if len(b) > maxCSRSize {
		return nil, req, fmt.Errorf("%w: request larger than %d bytes", ErrInvalidRequest, maxCSRSize)
	}
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, req, fmt.Errorf("%w: not a PEM CERTIFICATE REQUEST", ErrInvalidRequest)
	}
	if len(pemTrim(rest)) != 0 {
		return nil, req, fmt.Errorf("%w: trailing data after the PEM block", ErrInvalidRequest)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, req, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, req, fmt.Errorf("%w: signature: %v", ErrInvalidRequest, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, req, err
	}
	if len(csr.EmailAddresses) != 0 || len(csr.URIs) != 0 {
		return nil, req, fmt.Errorf("%w: only IP and DNS names may be requested", ErrInvalidRequest)
	}
	if len(csr.Extensions) > 1 || len(csr.Extensions) == 1 && !csr.Extensions[0].Id.Equal(oidSubjectAltName) {
		return nil, req, fmt.Errorf("%w: extensions other than subject alternative names", ErrInvalidRequest)
	}
	if !onlyCommonName(csr.Subject) {
		return nil, req, fmt.Errorf("%w: the subject may hold only a common name", ErrInvalidRequest)
	}
	req = NodeRequest{Name: csr.Subject.CommonName, IPs: csr.IPAddresses, DNSNames: csr.DNSNames}
	if err := req.Validate(); err != nil {
		return nil, req, err
	}
	return csr, req, nil
}

var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

func onlyCommonName(n pkix.Name) bool {
	for _, atv := range n.Names {
		if !atv.Type.Equal(oidCommonName) {
			return false
		}
	}
	return len(n.Names) == 1 && len(n.ExtraNames) == 0
}

var oidCommonName = asn1.ObjectIdentifier{2, 5, 4, 3}
