package multihost

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/containerdtest"
	"orch.dev/orch/internal/testcluster"
	"orch.dev/orch/node/runtime"
)

// site is the cluster under test:
//
//	root namespace: bridge omh<PID> 10.202.X.1/24, servers s1-s3 on .11-.13
//	namespace orchmh<PID>-w1: worker w1 on .21 (pod bridge orch0, its proxy, DNS, routes)
//	namespace orchmh<PID>-w2: worker w2 on .22
type site struct {
	t       *testing.T
	net     *testcluster.Net
	c       *testcluster.Cluster
	cl      *client.Client
	workers []*worker
}

// worker is one worker host.
type worker struct {
	name    string
	host    *testcluster.Host
	proc    *testcluster.Server
	ns      string // containerd namespace
	state   string // runtime state dir (pod network namespace mounts)
	podCIDR string
}

func token(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// startSite builds the network, starts three servers and two workers, and
// waits until both workers are Ready with a pod CIDR. Everything is
// removed when t ends, whether it failed or not.
func startSite(t *testing.T) *site {
	ctrd.Require(t)
	// A runtime configuration of t's own, for the containerd socket.
	rc := ctrd.Runtime(t)
	s := &site{t: t, net: testcluster.NewNet(t, "10.202.")}
	s.net.AddAddrs(t, 11, 12, 13)

	// The web image goes into each worker's containerd namespace while
	// the servers start (there is no registry).
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, name := range []string{"w1", "w2"} {
		w := &worker{name: name, ns: s.net.NSName(name), state: filepath.Join(s.net.Dir, name)}
		s.workers = append(s.workers, w)
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = importWeb(rc.Address, w.ns, t.TempDir()) }()
	}
	s.c = testcluster.Start(t, testcluster.Options{Prefix: s.net.Prefix, Token: token(t), LogLevel: "info"})
	s.cl = s.c.Client()
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for i, w := range s.workers {
		w.host = s.net.AddHost(t, w.name, 21+i)
		w.proc = s.c.WorkerIn(w.host, w.name, "--containerd-socket", rc.Address, "--containerd-namespace", w.ns,
			"--runtime-state-dir", w.state, "--proxy-mode", "nftables")
		// Registered after the cluster's cleanup, so run before it: the
		// worker is killed first, or it would restart what is removed.
		t.Cleanup(func() {
			w.proc.Kill()
			if err := cleanRuntime(rc.Address, w); err != nil {
				t.Errorf("cleaning up %s's containers: %v", w.name, err)
			}
		})
	}
	ctx := context.Background()
	s.c.Eventually(90*time.Second, "both workers Ready with a pod CIDR", func() bool {
		for _, w := range s.workers {
			o, err := s.cl.Get(ctx, api.Node, "", w.name, true)
			if err != nil {
				return false
			}
			n := o.(*corev1.Node)
			if !testcluster.NodeReady(n) || n.Spec.PodCIDR == "" {
				return false
			}
			w.podCIDR = n.Spec.PodCIDR
		}
		return true
	})
	return s
}

func importWeb(address, ns, dir string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, err := runtime.New(ctx, runtime.Config{Address: address, Namespace: ns, StateDir: filepath.Join(dir, "state"), LogDir: filepath.Join(dir, "logs")})
	if err != nil {
		return err
	}
	defer rt.Close()
	_, err = rt.ImportImages(ctx, bytes.NewReader(ctrd.Archive("web")))
	return err
}

// cleanRuntime removes what a killed worker's pods leave: their tasks and
// containers (pods outlive their worker by design), the network namespace
// mounts and tmpfs volumes under its state and data dirs, and the cgroups
// and runc state of its containerd namespace.
func cleanRuntime(address string, w *worker) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	cl, err := containerd.New(address, containerd.WithTimeout(5*time.Second))
	if err != nil {
		errs = append(errs, err)
	} else {
		nctx := namespaces.WithNamespace(ctx, w.ns)
		ctrs, err := cl.Containers(nctx)
		errs = append(errs, err)
		for _, c := range ctrs {
			if task, err := c.Task(nctx, nil); err == nil {
				if _, err := task.Delete(nctx, containerd.WithProcessKill); err != nil {
					errs = append(errs, fmt.Errorf("task %s: %w", c.ID(), err))
				}
			}
			if err := c.Delete(nctx, containerd.WithSnapshotCleanup); err != nil {
				errs = append(errs, fmt.Errorf("container %s: %w", c.ID(), err))
			}
		}
		cl.Close()
	}
	for _, dir := range []string{w.state, w.proc.DataDir} {
		containerdtest.UnmountUnder(dir)
	}
	errs = append(errs, os.RemoveAll(w.state))
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/" + w.ns)
	for _, d := range append(cgs, "/sys/fs/cgroup/"+w.ns, "/run/containerd/runc/"+w.ns) {
		if err := syscall.Rmdir(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// worker returns the worker called name.
func (s *site) worker(name string) *worker {
	for _, w := range s.workers {
		if w.name == name {
			return w
		}
	}
	s.t.Fatalf("no worker %s", name)
	return nil
}
