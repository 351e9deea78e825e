package chaos

import (
	"net/http"
	"os"
	"path/filepath"
	"time"

	"orch.dev/orch/api/client"
)

// The servers run with security on: clients trust the cluster CA, read
// from a server's DATA_DIR/tls/ca.crt once the first server has made it.

// caPEM is the cluster CA certificate, nil until a server has written it.
func (c *Cluster) caPEM() []byte {
	c.caMu.Lock()
	defer c.caMu.Unlock()
	if c.ca != nil {
		return c.ca
	}
	for _, h := range c.Servers {
		if b, err := os.ReadFile(filepath.Join(h.DataDir, "tls", "ca.crt")); err == nil && len(b) > 0 {
			c.ca = b
			break
		}
	}
	return c.ca
}

// httpClient is an HTTPS client (2 s timeout) that trusts the cluster CA;
// before the CA exists its calls fail, and callers' waits retry.
func (c *Cluster) httpClient() *http.Client {
	c.caMu.Lock()
	hc := c.hc
	c.caMu.Unlock()
	if hc != nil {
		return hc
	}
	pem := c.caPEM()
	if pem == nil {
		return &http.Client{Timeout: 2 * time.Second}
	}
	cfg, err := client.TLS{CAPEM: pem}.Config()
	if err != nil {
		c.t.Fatal(err)
	}
	hc = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	c.caMu.Lock()
	c.hc = hc
	c.caMu.Unlock()
	return hc
}
