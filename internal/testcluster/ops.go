package testcluster

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"orch.dev/orch/api/client"
)

// Orchd runs the orchd binary with args (a subcommand such as recover) and
// returns its combined output.
func (c *Cluster) Orchd(args ...string) (string, error) {
	out, err := exec.Command(filepath.Join(c.bin, "orchd"), args...).CombinedOutput()
	return string(out), err
}

// Orchctl runs the orchctl binary against the cluster's servers and
// returns its combined output; a refusal is an error, not a test failure.
func (c *Cluster) Orchctl(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bin, "orchctl"), args...)
	cmd.Env = append(os.Environ(), "ORCH_ADDR="+strings.Join(c.URLs(), ","))
	if t := c.BearerToken(); t != "" {
		cmd.Env = append(cmd.Env, "ORCH_TOKEN="+t)
	}
	if f := c.CAFile(); f != "" {
		cmd.Env = append(cmd.Env, "ORCH_CA_FILE="+f)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Exited reports whether the process ended on its own (it crashed or
// stopped itself); false when it was never started or was stopped by Kill
// or Stop.
func (s *Server) Exited() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// WaitSystemObjects waits until the leader has created the namespaces every
// cluster has (it does so after its barrier, a moment after the servers
// report ready): a write into "default" before that gets 404.
func (c *Cluster) WaitSystemObjects(timeout time.Duration) {
	c.t.Helper()
	c.Eventually(timeout, "the default namespace", func() bool {
		cl, err := client.New(client.Config{Servers: c.URLs(), Token: c.BearerToken(), TLS: c.TLS(), RetryFor: time.Second})
		if err != nil {
			return false
		}
		_, err = cl.Do(context.Background(), client.Request{Method: http.MethodGet, Path: "/api/v1/namespaces/default"})
		return err == nil
	})
}

// SetArg gives flag the value value from the server's next start on
// (replacing every value it had).
func (s *Server) SetArg(flag, value string) {
	s.DropArg(flag)
	s.AddArg(flag, value)
}

// AddArg appends flag value to the server's arguments for its next start.
func (s *Server) AddArg(flag, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.args = append(s.args, flag, value)
}

// DropArg removes flag and its value from the server's arguments.
func (s *Server) DropArg(flag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for i := 0; i < len(s.args); i++ {
		if s.args[i] == flag && i+1 < len(s.args) {
			i++
			continue
		}
		out = append(out, s.args[i])
	}
	s.args = out
}

// SetToken is the cluster secret clients present from now on (after the
// servers were restarted with another --token).
func (c *Cluster) SetToken(token string) { c.opts.Token = token }
