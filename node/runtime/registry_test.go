package runtime_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// startRegistry runs Debian's docker-registry (the distribution registry)
// on a free loopback port with its storage under the test's directory,
// and stops it when the test ends. It returns host:port.
func (e *testEnv) startRegistry() string {
	e.t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		e.t.Fatal("docker-registry is missing: run scripts/deps.sh runtime (make test does)")
	}
	dir := filepath.Join(e.dir, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		e.t.Fatal(err)
	}
	// A port found free can be taken before the registry binds it; then
	// the registry exits and another port is tried.
	for try := 0; try < 3; try++ {
		addr := freeLoopbackAddr(e.t)
		cfg := filepath.Join(dir, "config.yml")
		conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
		if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
			e.t.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, "registry.log"))
		if err != nil {
			e.t.Fatal(err)
		}
		cmd := exec.Command(bin, "serve", cfg)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		err = cmd.Start()
		logf.Close()
		if err != nil {
			e.t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		e.t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
		})
		if waitHTTP("http://"+addr+"/v2/", exited, 15*time.Second) {
			return addr
		}
		select {
		case <-exited:
			continue // lost the port
		default:
			log, _ := os.ReadFile(logf.Name())
			e.t.Fatalf("registry on %s did not answer:\n%s", addr, log)
		}
	}
	e.t.Fatal("registry did not start")
	return ""
}

// waitHTTP polls url until it answers 200, the process exits or the
// timeout passes; nothing else tells when a server starts listening.
func waitHTTP(url string, exited <-chan struct{}, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := httpClient.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		select {
		case <-exited:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// freeLoopbackAddr returns 127.0.0.1:port with a port that was free a
// moment ago.
func freeLoopbackAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
