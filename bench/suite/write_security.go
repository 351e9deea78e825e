package suite

import (
	"fmt"
	"slices"
)

// SecurityCost compares, for one run and one client count, orch with
// security on (HTTPS, bearer token, authorisation, as shipped) against the
// same build with --insecure (plain-HTTP API, no authentication). What
// --insecure leaves on is listed in BENCHMARKS.md: Raft mutual TLS,
// encrypted gossip, the audit log.
type SecurityCost struct {
	Run             int     `json:"run"`
	Clients         int     `json:"clients"`
	SecurePerSec    float64 `json:"secure_per_sec"`
	InsecurePerSec  float64 `json:"insecure_per_sec"`
	SecureP99Ms     float64 `json:"secure_p99_ms"`
	InsecureP99Ms   float64 `json:"insecure_p99_ms"`
	ThroughputLossP float64 `json:"throughput_loss_pct"` // (1 - secure/insecure) * 100
}

// goalSecurityLossPct is the bound on what security may cost in
// write throughput.
const goalSecurityLossPct = 15

// SecurityCosts pairs each run's secure and insecure orch results.
func SecurityCosts(ws []WriteResult) []SecurityCost {
	var out []SecurityCost
	for _, s := range ws {
		if s.System != SysOrch {
			continue
		}
		for _, i := range ws {
			if i.System == SysOrchInsecure && i.Run == s.Run && i.Clients == s.Clients && i.PerSec > 0 {
				out = append(out, SecurityCost{Run: s.Run, Clients: s.Clients,
					SecurePerSec: s.PerSec, InsecurePerSec: i.PerSec, SecureP99Ms: s.P99Ms, InsecureP99Ms: i.P99Ms,
					ThroughputLossP: (1 - s.PerSec/i.PerSec) * 100})
			}
		}
	}
	return out
}

// securityTable renders the cost of security: per client count, the
// median over runs of each figure and of the per-run throughput loss.
func (r *Results) securityTable(p func(string, ...any)) {
	costs := r.SecurityCost
	if len(costs) == 0 {
		return
	}
	var clients []int
	for _, c := range costs {
		if !slices.Contains(clients, c.Clients) {
			clients = append(clients, c.Clients)
		}
	}
	p("")
	p("### Cost of security: orch as shipped vs orch --insecure, same run")
	p("")
	p("| clients | secure writes/s | insecure writes/s | throughput loss %% | secure p99 ms | insecure p99 ms |")
	p("|---:|---:|---:|---:|---:|---:|")
	topN := slices.Max(clients)
	for _, n := range clients {
		keep := func(c SecurityCost) bool { return c.Clients == n }
		p("| %d | %s | %s | %s | %s | %s |", n,
			spreadBy(costs, keep, func(c SecurityCost) float64 { return c.SecurePerSec }).Format(0),
			spreadBy(costs, keep, func(c SecurityCost) float64 { return c.InsecurePerSec }).Format(0),
			spreadBy(costs, keep, func(c SecurityCost) float64 { return c.ThroughputLossP }).Format(1),
			spreadBy(costs, keep, func(c SecurityCost) float64 { return c.SecureP99Ms }).Auto(),
			spreadBy(costs, keep, func(c SecurityCost) float64 { return c.InsecureP99Ms }).Auto())
	}
	// Secure orch goes first in odd runs, insecure in even ones (Write):
	// the verdict balances the two orders as the comparison with etcd does.
	ratios := map[int]float64{}
	for _, c := range costs {
		if c.Clients == topN && c.InsecurePerSec > 0 {
			ratios[c.Run] = c.SecurePerSec / c.InsecurePerSec
		}
	}
	loss := (1 - orderBalanced(ratios).Balanced) * 100
	p("")
	verdict := fmt.Sprintf("**met** (%.1f%% < %d%%)", loss, goalSecurityLossPct)
	if loss >= goalSecurityLossPct {
		verdict = fmt.Sprintf("**missed** (%.1f%% ≥ %d%%)", loss, goalSecurityLossPct)
	}
	p("Goal at %d clients: security costs < %d%% of write throughput (from the geometric mean of the medians of secure/insecure throughput over runs where secure orch went first and runs where insecure orch did): %s.",
		topN, goalSecurityLossPct, verdict)
}
