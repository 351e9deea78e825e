package testcluster

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// Simulate starts `orchd simulate` with n nodes named sim-0..sim-(n-1)
// (extra flags appended) on the cluster's loopback /24, and waits until
// every node is Ready.
func (c *Cluster) Simulate(n int, extra ...string) *Server {
	c.t.Helper()
	ip := fmt.Sprintf("%s%d", c.prefix, 20+len(c.Others))
	name := fmt.Sprintf("simulator%d", len(c.Others)+1)
	s := &Server{Name: name, IP: ip, LogPath: filepath.Join(c.dir, name+".log"), bin: filepath.Join(c.bin, "orchd")}
	s.args = append([]string{"simulate", "--name", name, "--join", c.prefix + "11", "--bind", ip,
		"--nodes", fmt.Sprint(n), "--log-level", "debug"}, extra...)
	if c.opts.Token != "" {
		s.args = append(s.args, "--token", c.opts.Token)
	}
	c.Others = append(c.Others, s)
	if err := s.Start(); err != nil {
		c.t.Fatal(err)
	}
	cl := c.Client()
	c.Eventually(time.Minute, fmt.Sprintf("%d simulated nodes Ready", n), func() bool {
		l, err := cl.List(context.Background(), api.Node, "", client.ListOptions{LabelSelector: "orch.dev/simulated=true"})
		if err != nil {
			return false
		}
		ready := 0
		for _, o := range l.Items {
			if NodeReady(o.(*corev1.Node)) {
				ready++
			}
		}
		return ready >= n
	})
	return s
}

// NodeReady reports whether a node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Worker starts a worker, `orch-worker --name name`, on the cluster's
// loopback /24 (extra flags appended: containerd socket, namespace, pod
// bridge...). It does not wait: the caller knows what Ready means for it.
func (c *Cluster) Worker(name string, extra ...string) *Server {
	c.t.Helper()
	ip := fmt.Sprintf("%s%d", c.prefix, 20+len(c.Others))
	s := &Server{Name: name, IP: ip, DataDir: filepath.Join(c.dir, name), LogPath: filepath.Join(c.dir, name+".log"), bin: filepath.Join(c.bin, "orch-worker")}
	s.args = append([]string{"--name", name, "--join", c.prefix + "11", "--bind", ip,
		"--data-dir", s.DataDir, "--log-level", "info"}, extra...)
	if c.opts.Token != "" {
		s.args = append(s.args, "--token", c.opts.Token)
	}
	c.Others = append(c.Others, s)
	if err := s.Start(); err != nil {
		c.t.Fatal(err)
	}
	return s
}

// WorkerWithToken is Worker with --token token (a join token, or any
// other) instead of the cluster's secret, and --join HOST: the first
// server's address, which a token join reaches on the API port.
func (c *Cluster) WorkerWithToken(name, token string, extra ...string) *Server {
	c.t.Helper()
	ip := fmt.Sprintf("%s%d", c.prefix, 20+len(c.Others))
	s := &Server{Name: name, IP: ip, DataDir: filepath.Join(c.dir, name), LogPath: filepath.Join(c.dir, name+".log"), bin: filepath.Join(c.bin, "orch-worker")}
	s.args = append([]string{"--name", name, "--join", c.prefix + "11", "--bind", ip,
		"--data-dir", s.DataDir, "--log-level", "info", "--token", token}, extra...)
	c.Others = append(c.Others, s)
	if err := s.Start(); err != nil {
		c.t.Fatal(err)
	}
	return s
}
