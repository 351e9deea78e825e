package orchd

import (
	"bytes"
	"strings"
	"testing"

	"orch.dev/orch/internal/workercmd"
)

// `orchd agent --worker` and orch-worker read the worker's flags the same
// way: the same bad flag fails both with the same message.
func TestWorkerFlagsSameInOrchWorker(t *testing.T) {
	dir := t.TempDir()
	base := []string{"--name", "w1", "--data-dir", dir, "--join", "127.0.0.1"}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--name", "w1", "--join", "127.0.0.1"}, "--data-dir: required"},
		{append(base, "--bind", "10.1.2.3"), "--token: required when listening on the non-loopback address 10.1.2.3"},
		{append(base, "--max-pods", "0"), "--max-pods: must be at least 1"},
		{append(base, "--gpus", "-1"), "--gpus: must be >= 0"},
		{append(base, "--node-label", "novalue"), "--node-label \"novalue\": must be key=value"},
		{append(base, "--node-taint", "k=v:Sometimes"), "--node-taint \"k=v:Sometimes\""},
		{append(base, "--proxy-mode", "iptables"), "--proxy-mode \"iptables\""},
		{append(base, "--log-level", "loud"), "--log-level \"loud\""},
		{append(base, "--token-file", dir+"/missing"), "--token-file"},
		{append(base, "extra"), "unexpected argument \"extra\""},
	}
	for _, tc := range cases {
		var orchd, worker bytes.Buffer
		orchdCode := Main(append([]string{"orchd", "agent", "--worker"}, tc.args...), &orchd)
		workerCode := workercmd.Main(append([]string{"orch-worker"}, tc.args...), &worker)
		for _, r := range []struct {
			bin  string
			code int
			out  string
		}{{"orchd agent --worker", orchdCode, orchd.String()}, {"orch-worker", workerCode, worker.String()}} {
			out := strings.TrimSpace(r.out)
			if r.code == 0 || !strings.Contains(out, tc.want) || strings.Count(out, "\n") > 0 {
				t.Errorf("%s %v: exit %d, output %q; want a non-zero exit and one line containing %q", r.bin, tc.args, r.code, out, tc.want)
			}
		}
	}
}
