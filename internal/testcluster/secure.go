package testcluster

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"

	"orch.dev/orch/api/client"
)

// Clusters run with security on: every server has the same cluster secret
// (Options.Token, a fresh one by default), the first server creates the
// cluster CA, and clients trust it by reading DATA_DIR/tls/ca.crt from a
// server, as an operator would.

// NewSecret returns a fresh cluster secret (--token).
func NewSecret() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Token is the cluster secret the servers run with.
func (c *Cluster) Token() string { return c.opts.Token }

// BearerToken is what clients present: the cluster secret, or nothing
// when the servers run with --insecure (Options.Insecure).
func (c *Cluster) BearerToken() string {
	if c.opts.Insecure {
		return ""
	}
	return c.opts.Token
}

// CAFile is a copy of the cluster CA certificate, "" until a server has
// written its tls/ca.crt.
func (c *Cluster) CAFile() string {
	c.caMu.Lock()
	defer c.caMu.Unlock()
	if c.caFile != "" {
		return c.caFile
	}
	for _, s := range c.Servers {
		b, err := os.ReadFile(filepath.Join(s.DataDir, "tls", "ca.crt"))
		if err != nil || len(b) == 0 {
			continue
		}
		path := filepath.Join(c.dir, "ca.crt")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			c.t.Fatal(err)
		}
		c.caFile = path
		return path
	}
	return ""
}

// TLS is the client TLS configuration that trusts the cluster CA (none
// before the CA exists: clients then fail and tests' waits retry; none
// with Options.Insecure).
func (c *Cluster) TLS() client.TLS {
	if c.opts.Insecure {
		return client.TLS{}
	}
	return client.TLS{CAFile: c.CAFile()}
}

// HTTPClient is an HTTPS client that trusts the cluster CA and presents
// the cluster secret, for tests that speak to the API without the Go
// client.
func (c *Cluster) HTTPClient() *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 1024} // benchmarks' many watchers
	if t := c.TLS(); t.Enabled() {
		cfg, err := t.Config()
		if err != nil {
			c.t.Fatal(err)
		}
		tr.TLSClientConfig = cfg
	}
	return &http.Client{Transport: bearer{token: c.BearerToken(), next: tr}}
}

// bearer adds a bearer token to every request that has none.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Authorization") != "" || b.token == "" {
		return b.next.RoundTrip(r)
	}
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}
