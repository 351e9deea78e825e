package cli

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"orch.dev/orch/agent"
	"orch.dev/orch/api/client"
)

// Test servers speak HTTPS and require credentials. registerCA registers
// a server's CA and cluster secret so that runCLI, startCLI and testClient
// pass them (--ca-file, --token), as an operator would with
// DATA_DIR/tls/ca.crt and the cluster secret.

var (
	testCAs    sync.Map // server URL -> CA file
	testTokens sync.Map // server URL -> cluster secret
)

// registerCA keeps a's CA in a file and returns a's URL.
func registerCA(t *testing.T, a *agent.Agent) string {
	t.Helper()
	<-a.TLSReady()
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, a.CACertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	testCAs.Store(a.URL(), path)
	testTokens.Store(a.URL(), a.ClusterSecret())
	return a.URL()
}

// caArgs are the --ca-file and --token flags for a comma-separated server
// list.
func caArgs(servers string) []string {
	for _, s := range strings.Split(servers, ",") {
		if f, ok := testCAs.Load(strings.TrimSpace(s)); ok {
			return []string{"--ca-file", f.(string), "--token", tokenOf(strings.TrimSpace(s))}
		}
	}
	return nil
}

// tokenOf is the cluster secret registered for a server, "" for none.
func tokenOf(server string) string {
	if v, ok := testTokens.Load(server); ok {
		return v.(string)
	}
	return ""
}

// caFileOf is the CA file registered for a server, "" for none.
func caFileOf(server string) string {
	if a := caArgs(server); a != nil {
		return a[1]
	}
	return ""
}

func TestMain(m *testing.M) {
	// Keep the tests away from the user's connection file: an empty one.
	f, err := os.CreateTemp("", "orchctl-test-config-")
	if err != nil {
		panic(err)
	}
	f.Close()
	os.Setenv("ORCH_CONFIG", f.Name())
	code := m.Run()
	os.Remove(f.Name())
	os.Exit(code)
}

// testTLSConfig trusts the CA registered for server.
func testTLSConfig(t *testing.T, server string) *tls.Config {
	t.Helper()
	cfg, err := client.TLS{CAFile: caFileOf(server)}.Config()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}
