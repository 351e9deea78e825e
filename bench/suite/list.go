package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// ListNamespace holds exactly ListObjects ConfigMaps during the list suite.
const ListNamespace = "bench-list"

// Object counts: the list size (also the first memory point), and the
// large state (second memory point, snapshots, restart). Variables only so
// that a quick check of the suite itself can shrink them (-small).
var (
	ListObjects = 10_000
	BulkObjects = 100_000
)

// ListResult is one run's list latencies for one read mode.
type ListResult struct {
	Run   int    `json:"run"`
	Mode  string `json:"mode"` // "linearizable" or "stale"
	Items int    `json:"items"`
	Bytes int    `json:"bytes"`
	// Raw: the HTTP call through client.Do, response body fully read.
	Lists int     `json:"lists"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// Typed: client.List, which also decodes the 10,000 items into
	// corev1.ConfigMap values (the client's cost, in this process).
	TypedLists int     `json:"typed_lists"`
	TypedP50Ms float64 `json:"typed_p50_ms"`
	TypedP99Ms float64 `json:"typed_p99_ms"`
	LoadAvg    float64 `json:"loadavg_1m"`
}

// List measures lists of the 10,000 ConfigMaps in ListNamespace, one at a
// time, rotating over the three servers (a read on a follower is the common
// case), alternating linearizable and stale lists so both see the same
// background load.
func List(env *Env, run int, c *testcluster.Cluster, cl *client.Client, lists, typed int) []ListResult {
	ctx := context.Background()
	urls := c.URLs()
	modes := []string{"linearizable", "stale"}
	res := map[string]*ListResult{}
	lat := map[string]Latencies{}
	tlat := map[string]Latencies{}
	for _, m := range modes {
		res[m] = &ListResult{Run: run, Mode: m}
	}
	query := func(mode string) url.Values {
		q := url.Values{}
		if mode == "stale" {
			q.Set("stale", "true")
		}
		return q
	}
	// Check once per mode that the list holds what it should.
	for _, m := range modes {
		resp, err := cl.Do(ctx, client.Request{Method: http.MethodGet, Path: api.ConfigMap.Path(ListNamespace), Query: query(m)})
		if err != nil {
			env.Fatal(err)
		}
		var body struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(resp.Body, &body); err != nil {
			env.Fatal(err)
		}
		if len(body.Items) != ListObjects {
			env.Fatalf("%s list of %s returned %d items, want %d", m, ListNamespace, len(body.Items), ListObjects)
		}
		res[m].Items, res[m].Bytes = len(body.Items), len(resp.Body)
	}
	for i := range lists {
		for _, m := range modes {
			t0 := time.Now()
			resp, err := cl.Do(ctx, client.Request{Method: http.MethodGet, Path: api.ConfigMap.Path(ListNamespace), Query: query(m), Server: urls[i%len(urls)]})
			d := time.Since(t0)
			if err != nil {
				env.Fatal(err)
			}
			if len(resp.Body) < ListObjects*ValueSize {
				env.Fatalf("%s list returned only %d bytes", m, len(resp.Body))
			}
			lat[m] = append(lat[m], d)
		}
	}
	// client.List has no server pin: it reads from the client's preferred
	// server, so rotate over one-server clients.
	var single []*client.Client
	for _, u := range urls {
		one, err := client.New(orchConfig([]string{u}))
		if err != nil {
			env.Fatal(err)
		}
		single = append(single, one)
	}
	for i := range typed {
		for _, m := range modes {
			t0 := time.Now()
			l, err := single[i%len(single)].List(ctx, api.ConfigMap, ListNamespace, client.ListOptions{Stale: m == "stale"})
			d := time.Since(t0)
			if err != nil {
				env.Fatal(err)
			}
			if len(l.Items) != ListObjects {
				env.Fatalf("typed %s list returned %d items", m, len(l.Items))
			}
			tlat[m] = append(tlat[m], d)
		}
	}
	var out []ListResult
	for _, m := range modes {
		r := res[m]
		r.Lists, r.P50Ms, r.P99Ms, r.MaxMs = len(lat[m]), Ms(lat[m].Percentile(50)), Ms(lat[m].Percentile(99)), Ms(lat[m].Percentile(100))
		r.TypedLists, r.TypedP50Ms, r.TypedP99Ms = len(tlat[m]), Ms(tlat[m].Percentile(50)), Ms(tlat[m].Percentile(99))
		r.LoadAvg = LoadAvg()
		out = append(out, *r)
	}
	return out
}

// ListSummary is for progress lines.
func ListSummary(rs []ListResult) string {
	s := ""
	for _, r := range rs {
		s += fmt.Sprintf(" %s p50 %.1f ms p99 %.1f ms (typed p50 %.1f ms);", r.Mode, r.P50Ms, r.P99Ms, r.TypedP50Ms)
	}
	return s
}
