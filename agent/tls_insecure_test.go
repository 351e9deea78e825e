package agent

import (
	"net/http"
	"strings"
	"testing"
)

// --insecure serves plain HTTP, and only on loopback addresses.
func TestInsecureIsLoopbackOnly(t *testing.T) {
	_, err := New(Config{Name: "x", DataDir: t.TempDir(), BindAddr: "10.1.2.3", Token: "t", Server: true, Insecure: true})
	if err == nil || !strings.Contains(err.Error(), "--insecure") || !strings.Contains(err.Error(), "10.1.2.3") {
		t.Fatalf("--insecure off loopback: %v", err)
	}
	c := startCluster(t, 1, "", func(cfg *Config) { cfg.Insecure = true })
	a := c.agents[0]
	if !strings.HasPrefix(a.URL(), "http://") {
		t.Fatalf("URL %s", a.URL())
	}
	resp, err := http.Get(a.URL() + "/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("plain HTTP /version: %s", resp.Status)
	}
}
