package suite

import (
	"fmt"
	"slices"
)

// Goals from the service-networking issue: endpoint propagation p99.
const (
	goalProxyP99Ms1k  = 200
	goalProxyP99Ms10k = 1000
)

// proxyTable reports the proxy suite.
func (r *Results) proxyTable(p func(string, ...any)) {
	p("")
	p("### Endpoint propagation: pod Ready -> its DNAT rule in nftables on both workers (goal p99 <= 200 ms at 1,000 Services, <= 1 s at 10,000)")
	p("")
	p("| services | endpoints | samples per run | both nodes p50 ms | p99 ms | max ms | one node p50 ms | p99 ms | growing to this scale: s (objects added) | goal |")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	var scales []int
	for _, x := range r.Proxy {
		if !slices.Contains(scales, x.Services) {
			scales = append(scales, x.Services)
		}
	}
	for _, n := range scales {
		keep := func(x ProxyResult) bool { return x.Services == n }
		p99 := spreadBy(r.Proxy, keep, func(x ProxyResult) float64 { return x.P99Ms })
		goal := "–"
		switch n {
		case 1000:
			goal = verdictLE(p99.Median, goalProxyP99Ms1k)
		case 10000:
			goal = verdictLE(p99.Median, goalProxyP99Ms10k)
		}
		var eps, samples, added, pokes int
		for _, x := range r.Proxy {
			if keep(x) {
				eps, samples, added = x.Endpoints, x.Samples, x.GrowAdded
				pokes += x.Pokes
			}
		}
		poked := ""
		if pokes > 0 {
			poked = fmt.Sprintf("; %d pods poked", pokes)
		}
		p("| %d | %d | %d | %s | %s | %s | %s | %s | %s (%d Services + %d pods%s) | %s |", n, eps, samples,
			spreadBy(r.Proxy, keep, func(x ProxyResult) float64 { return x.P50Ms }).Format(1), p99.Format(1),
			spreadBy(r.Proxy, keep, func(x ProxyResult) float64 { return x.MaxMs }).Format(1),
			spreadBy(r.Proxy, keep, func(x ProxyResult) float64 { return x.NodeP50Ms }).Format(1),
			spreadBy(r.Proxy, keep, func(x ProxyResult) float64 { return x.NodeP99Ms }).Format(1),
			spreadBy(r.Proxy, keep, func(x ProxyResult) float64 { return x.GrowSeconds }).Format(1), added, added, poked, goal)
	}
}
