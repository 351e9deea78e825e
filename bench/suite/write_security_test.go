package suite

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestSecurityCosts(t *testing.T) {
	ws := []WriteResult{
		{System: SysOrch, Run: 1, Clients: 16, LoadRun: LoadRun{PerSec: 900, P99Ms: 40}},
		{System: SysOrchInsecure, Run: 1, Clients: 16, LoadRun: LoadRun{PerSec: 1000, P99Ms: 30}},
		{System: SysEtcd, Run: 1, Clients: 16, LoadRun: LoadRun{PerSec: 5000, P99Ms: 10}},
		{System: SysOrch, Run: 2, Clients: 16, LoadRun: LoadRun{PerSec: 700, P99Ms: 50}},
		{System: SysOrchInsecure, Run: 2, Clients: 16, LoadRun: LoadRun{PerSec: 1000, P99Ms: 30}},
	}
	costs := SecurityCosts(ws)
	if len(costs) != 2 {
		t.Fatalf("got %d costs, want one per run: %+v", len(costs), costs)
	}
	if c := costs[0]; c.Run != 1 || math.Abs(c.ThroughputLossP-10) > 1e-9 || c.SecureP99Ms != 40 || c.InsecureP99Ms != 30 {
		t.Errorf("run 1: %+v, want a 10%% loss and p99 40 vs 30 ms", c)
	}
	if c := costs[1]; math.Abs(c.ThroughputLossP-30) > 1e-9 {
		t.Errorf("run 2: loss %.1f%%, want 30%%", c.ThroughputLossP)
	}
	r := &Results{Runs: 2, Write: ws, SecurityCost: costs}
	var md bytes.Buffer
	r.Markdown(&md)
	out := md.String()
	// Run 1 went secure first (ratio 0.9), run 2 insecure first (0.7):
	// balanced, 1 - sqrt(0.9*0.7) = 20.6%: over the 15% goal.
	for _, want := range []string{"| orch-insecure |", "Cost of security", "| 16 | 800 (700–900) | 1000 (1000–1000) | 20.0 (10.0–30.0) |", "**missed** (20.6% ≥ 15%)"} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
}
