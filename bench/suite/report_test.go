package suite

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// The write verdict balances the two orders: orch first (odd runs) did
// better here than etcd first (even runs), and the median of all five runs
// (1.05) would call the goal met while the balanced figure does not.
func TestWriteVerdictBalancesOrder(t *testing.T) {
	perSec := map[int][2]float64{ // run: orch, etcd
		1: {1050, 1000}, 2: {800, 1000}, 3: {1100, 1000}, 4: {700, 1000}, 5: {1060, 1000},
	}
	var ws []WriteResult
	for run, v := range perSec {
		ws = append(ws,
			WriteResult{System: SysOrch, Run: run, Clients: 256, LoadRun: LoadRun{PerSec: v[0], P99Ms: 100}},
			WriteResult{System: SysEtcd, Run: run, Clients: 256, LoadRun: LoadRun{PerSec: v[1], P99Ms: 200}})
	}
	ratios := map[int]float64{}
	for run, v := range perSec {
		ratios[run] = v[0] / v[1]
	}
	o := orderBalanced(ratios)
	if o.All.Median != 1.05 || o.OrchFirst.Median != 1.06 || o.EtcdFirst.Median != 0.75 {
		t.Fatalf("medians: all %.2f, orch first %.2f, etcd first %.2f; want 1.05, 1.06, 0.75", o.All.Median, o.OrchFirst.Median, o.EtcdFirst.Median)
	}
	if want := math.Sqrt(1.06 * 0.75); math.Abs(o.Balanced-want) > 1e-9 {
		t.Fatalf("balanced %.4f, want %.4f", o.Balanced, want)
	}
	r := &Results{Runs: 5, Write: ws}
	var md bytes.Buffer
	r.Markdown(&md)
	for _, want := range []string{"throughput 1.06 (1.05–1.10) and 0.75 (0.70–0.80): 0.89", "Throughput goal **missed**: orch reaches 89% of etcd's throughput; p99 goal **met**"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}

	// One order only (a single run): the median of the runs decides.
	if o := orderBalanced(map[int]float64{1: 1.2}); o.Balanced != 1.2 {
		t.Errorf("one run: balanced %.2f, want 1.2", o.Balanced)
	}
}
