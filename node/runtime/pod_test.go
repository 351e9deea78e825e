package runtime_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
)

// Two containers of one pod share its network namespace (each reaches the
// other on 127.0.0.1) and an emptyDir-style host directory (what one writes
// the other and the host read), a read-only mount cannot be written, and
// both see the pod's hostname, hosts and resolv.conf files.
func TestPodSharesNetworkAndVolume(t *testing.T) {
	e := newEnv(t)
	e.importImages("web")
	shared := filepath.Join(e.dir, "volumes", "shared")
	if err := os.MkdirAll(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	sb, err := e.rt.CreateSandbox(ctxT(t), runtime.SandboxConfig{
		Name: "pair", Namespace: "default", UID: "uid-pair", Hostname: "pair-host",
		DNS: runtime.DNSConfig{Nameservers: []string{"10.96.0.10"}, Searches: []string{"default.svc.cluster.local"}, Options: []string{"ndots:5"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := e.run(sb, runtime.ContainerConfig{Name: "a", Image: img("web"), Env: []string{"POD_NAME=a"},
		Mounts: []runtime.Mount{{HostPath: shared, ContainerPath: "/shared"}}})
	b := e.run(sb, runtime.ContainerConfig{Name: "b", Image: img("web"), Env: []string{"POD_NAME=b", "PORT=8081"},
		Mounts: []runtime.Mount{{HostPath: shared, ContainerPath: "/data", ReadOnly: true}}})
	e.waitLog(a, "listening", 10*time.Second)
	e.waitLog(b, "listening", 10*time.Second)

	// Over the pod's loopback, in both directions.
	if code, out, errOut := e.exec(a, "wget", "-q", "-O", "-", "http://127.0.0.1:8081/"); code != 0 || out != "hello from b (hostname pair-host)\n" {
		t.Fatalf("a -> b: exit %d, %q %q", code, out, errOut)
	}
	if code, out, errOut := e.exec(b, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/"); code != 0 || out != "hello from a (hostname pair-host)\n" {
		t.Fatalf("b -> a: exit %d, %q %q", code, out, errOut)
	}
	// From the host, on the pod IP.
	if body := get(t, "http://"+sb.IP+":8081/", 5*time.Second); body != "hello from b (hostname pair-host)\n" {
		t.Fatalf("host -> b: %q", body)
	}

	// The shared directory: a writes, b and the host read; b cannot write.
	if code, _, errOut := e.exec(a, "sh", "-c", "echo from-a > /shared/note"); code != 0 {
		t.Fatalf("write in a: %d %s", code, errOut)
	}
	if _, out, _ := e.exec(b, "cat", "/data/note"); out != "from-a\n" {
		t.Fatalf("b reads %q", out)
	}
	if got, _ := os.ReadFile(filepath.Join(shared, "note")); string(got) != "from-a\n" {
		t.Fatalf("host reads %q", got)
	}
	if code, _, _ := e.exec(b, "touch", "/data/from-b"); code == 0 {
		t.Fatal("wrote into a read-only mount")
	}
	if _, err := os.Stat(filepath.Join(shared, "from-b")); !os.IsNotExist(err) {
		t.Fatalf("read-only mount written: %v", err)
	}

	// The sandbox's files, the same in both containers.
	for _, id := range []string{a, b} {
		if _, out, _ := e.exec(id, "cat", "/etc/hostname"); out != "pair-host\n" {
			t.Errorf("/etc/hostname %q", out)
		}
		if _, out, _ := e.exec(id, "cat", "/etc/hosts"); !strings.Contains(out, sb.IP+"\tpair-host\n") || !strings.Contains(out, "127.0.0.1\tlocalhost") {
			t.Errorf("/etc/hosts %q", out)
		}
		want := "nameserver 10.96.0.10\nsearch default.svc.cluster.local\noptions ndots:5\n"
		if _, out, _ := e.exec(id, "cat", "/etc/resolv.conf"); out != want {
			t.Errorf("/etc/resolv.conf %q, want %q", out, want)
		}
	}
}

// Command, args, env and workingDir reach the process as Kubernetes
// defines them: command replaces the entrypoint, args alone follow the
// image's entrypoint, env is applied over the image's.
func TestProcessConfig(t *testing.T) {
	e := newEnv(t)
	e.importImages("web")
	sb := e.sandbox("proc")

	// Args only: the image's entrypoint (/bin/web) with these arguments.
	web := e.run(sb, runtime.ContainerConfig{Name: "web", Image: img("web"), Args: []string{"--ignored", "x y"},
		Env: []string{"POD_NAME=proc", "GREETING=hi there", "PATH=/bin:/usr/bin"}})
	e.waitLog(web, "listening", 10*time.Second)
	if _, out, _ := e.exec(web, "cat", "/proc/1/cmdline"); out != "/bin/web\x00--ignored\x00x y\x00" {
		t.Fatalf("cmdline %q", out)
	}
	var got struct {
		Hostname string
		Env      map[string]string
	}
	if err := json.Unmarshal([]byte(get(t, "http://"+sb.IP+":8080/env", 5*time.Second)), &got); err != nil {
		t.Fatal(err)
	}
	if got.Hostname != "proc" || got.Env["GREETING"] != "hi there" || got.Env["POD_NAME"] != "proc" || got.Env["PATH"] != "/bin:/usr/bin" {
		t.Fatalf("env %+v", got)
	}

	// Command and args replace both; workingDir is the process's cwd.
	sh := e.run(sb, runtime.ContainerConfig{Name: "sh", Image: img("web"),
		Command:    []string{"/bin/sh", "-c"},
		Args:       []string{`echo "cwd=$(pwd) greeting=$GREETING args=$0"; exec sleep 3600`, "zero"},
		Env:        []string{"GREETING=hello"},
		WorkingDir: "/tmp"})
	e.waitLog(sh, "greeting=hello args=zero", 10*time.Second)
	if l := e.logs(sh, runtime.LogOptions{}); l != "cwd=/tmp greeting=hello args=zero\n" {
		t.Fatalf("log %q", l)
	}
	// An exec runs with the container's environment and working directory.
	if _, out, _ := e.exec(sh, "sh", "-c", "pwd; echo $GREETING"); out != "/tmp\nhello\n" {
		t.Fatalf("exec sees %q", out)
	}
}
