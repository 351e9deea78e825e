package orchd

import (
	"bytes"
	"strings"
	"testing"
)

// Bad flags exit non-zero with one line naming the flag, before anything
// starts or is written.
func TestBadFlagsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--bind", "10.1.2.3"}, "--token: required when listening on the non-loopback address 10.1.2.3"},
		{[]string{"agent", "--server", "--name", "S_1", "--data-dir", dir}, "--name \"S_1\""},
		{[]string{"agent", "--server", "--name", "s1"}, "--data-dir: required"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--bind", "not-an-ip"}, "--bind \"not-an-ip\": not an IP address"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--log-level", "loud"}, "--log-level \"loud\""},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--token-file", dir + "/missing"}, "--token-file"},
		{[]string{"agent", "--name", "s1", "--data-dir", dir, "--bootstrap-expect", "3"}, "--bootstrap-expect: only servers bootstrap"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--http-port", "70000"}, "--http-port 70000"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--raft-heartbeat", "100ms", "--raft-leader-lease", "1s"}, "--raft-leader-lease 1s"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "extra"}, "unexpected argument \"extra\""},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--default-toleration-seconds", "-1"}, "--default-toleration-seconds -1"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--bind", "10.1.2.3", "--token", "t", "--insecure"}, "--insecure: refused because --bind 10.1.2.3 is not a loopback address"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--bootstrap-expect", "3"}, "--token: required for a cluster of several servers"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--gc-percent", "-5"}, "--gc-percent -5"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--event-ttl", "0s"}, "--event-ttl 0s: must be at least 1s"},
		{[]string{"agent", "--server", "--name", "s1", "--data-dir", dir, "--memory-limit", "lots"}, "--memory-limit \"lots\""},
		{[]string{"simulate", "--nodes", "3"}, "--join: required"},
		{[]string{"simulate", "--join", "127.0.0.1", "--nodes", "0"}, "--nodes: must be at least 1"},
		{[]string{"simulate", "--join", "127.0.0.1", "--nodes", "2", "--cpu", "lots"}, "--cpu \"lots\""},
		{[]string{"simulate", "--join", "127.0.0.1", "--nodes", "2", "--memory", "-1Gi"}, "--memory \"-1Gi\""},
		{[]string{"simulate", "--join", "127.0.0.1", "--nodes", "2", "--label", "novalue"}, "--label \"novalue\": must be key=value"},
	}
	for _, tc := range cases {
		var stderr bytes.Buffer
		code := Main(append([]string{"orchd"}, tc.args...), &stderr)
		out := strings.TrimSpace(stderr.String())
		if code == 0 || !strings.Contains(out, tc.want) || strings.Count(out, "\n") > 0 {
			t.Errorf("%v: exit %d, output %q; want a non-zero exit and one line containing %q", tc.args, code, out, tc.want)
		}
	}
}
