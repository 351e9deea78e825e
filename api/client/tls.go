package client

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"orch.dev/orch/internal/pki"
)

// TLS configures how the client speaks HTTPS to the servers. Servers are
// checked against the cluster CA alone (never the system roots) and by
// their role in the certificate, not by host name, so any server address
// works. A client certificate, when given, identifies the caller.
type TLS struct {
	// CAFile or CAPEM is the cluster CA certificate (DATA_DIR/tls/ca.crt
	// on any server). Without either, the client speaks plain HTTP.
	CAFile string
	CAPEM  []byte
	// CertFile and KeyFile are a client certificate and its key (PEM).
	CertFile, KeyFile string
	// Certs, instead of files, is a certificate renewed in place (a node's).
	Certs *pki.Certs
}

// Enabled reports whether a CA is configured.
func (t TLS) Enabled() bool { return t.CAFile != "" || len(t.CAPEM) > 0 }

// Config builds the tls.Config; errors name the setting at fault.
func (t TLS) Config() (*tls.Config, error) {
	pemCA := t.CAPEM
	if t.CAFile != "" && len(pemCA) == 0 {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pemCA = b
	}
	if len(pemCA) == 0 {
		return nil, errors.New("TLS: no CA certificate given (--ca-file)")
	}
	ca, err := pki.ParseCertPEM(pemCA)
	if err != nil {
		return nil, fmt.Errorf("CA file %s: %w", t.CAFile, err)
	}
	certs := t.Certs
	switch {
	case certs != nil:
	case t.CertFile != "" && t.KeyFile != "":
		c, err := loadKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		certs = pki.NewCerts(c)
	case t.CertFile != "" || t.KeyFile != "":
		return nil, errors.New("client certificate: give both the certificate and the key (--client-cert and --client-key)")
	}
	return pki.ClientConfig(ca, certs, pki.Policy{Roles: []pki.Role{pki.RoleServer}}), nil
}

func loadKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return c, fmt.Errorf("client certificate %s / key %s: %w", certFile, keyFile, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return c, fmt.Errorf("client certificate %s: %w", certFile, err)
		}
	}
	return c, nil
}
