package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/internal/inproc"
)

// orchctl config writes the connection file, orchctl reads it (flags win),
// view redacts the token, and a server's admin.conf is a working one.
func TestConfigFile(t *testing.T) {
	c := inproc.Start(t, inproc.Options{})
	srv := registerCA(t, c.Agents[0])
	path := filepath.Join(t.TempDir(), "orch", "config")
	t.Setenv("ORCH_CONFIG", path)

	mustFail(t, "", "", "config file: open "+path, "get", "configmaps") // ORCH_CONFIG names a missing file
	mustFail(t, "", "", "set-cluster: give --server, --ca-file or both", "config", "set-cluster")
	mustFail(t, "", "", "--ca-file: CA file", "config", "set-cluster", "--ca-file", filepath.Join(t.TempDir(), "missing.crt"))
	mustFail(t, "", "", "set-credentials: give --token, or --client-cert and --client-key", "config", "set-credentials", "alice", "--client-cert", "c.crt")
	if _, err := os.Stat(path); err == nil {
		t.Fatal("a refused command wrote the connection file")
	}
	mustRun(t, "", "config", "set-cluster", "--server", srv, "--ca-file", caFileOf(srv))
	secret := c.Agents[0].ClusterSecret()
	mustRun(t, "", "config", "set-credentials", "alice", "--token", secret)
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("connection file: %v %v", st, err)
	}
	view := mustRun(t, "", "config", "view")
	if strings.Contains(view, secret) || !strings.Contains(view, "token: REDACTED") || !strings.Contains(view, "user: alice") {
		t.Errorf("config view:\n%s", view)
	}
	if out := mustRun(t, "", "get", "namespaces"); !strings.Contains(out, "kube-system") {
		t.Errorf("get namespaces through the connection file:\n%s", out)
	}
	// A flag wins over the file: another CA file that does not exist fails.
	mustFail(t, "", "", "CA file", "get", "namespaces", "--ca-file", filepath.Join(t.TempDir(), "nope.crt"))

	// The server's admin.conf.
	admin := c.Agents[0].AdminConfPath()
	deadline := time.Now().Add(10 * time.Second)
	for _, err := os.Stat(admin); err != nil; _, err = os.Stat(admin) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", admin, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, _ := os.Stat(admin); st.Mode().Perm() != 0o600 {
		t.Errorf("admin.conf mode %v", st.Mode().Perm())
	}
	t.Setenv("ORCH_CONFIG", admin)
	if out := mustRun(t, "", "get", "namespaces"); !strings.Contains(out, "kube-system") {
		t.Errorf("get namespaces with admin.conf:\n%s", out)
	}
}
