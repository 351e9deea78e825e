package suite

import (
	"context"
	"fmt"
	"strings"
	"time"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// RecoverResult is one quorum-loss recovery (docs/operations.md, "Quorum
// loss"): on a cluster holding Objects ConfigMaps, two of the three
// servers are killed for good and the survivor is stopped; then
// `orchd recover --data-dir` runs on it and it is started again.
type RecoverResult struct {
	Run     int `json:"run"`
	Objects int `json:"objects"`
	// How long `orchd recover` took, and from its start to the first write
	// acknowledged by the restarted survivor (the runbook's whole outage
	// after the operator's decision).
	CommandMs float64 `json:"command_ms"`
	ServingMs float64 `json:"serving_ms"`
	// Objects the recovered server lists (every one written before).
	Kept int `json:"kept"`
}

// recoveries measures n recoveries, each on a fresh cluster.
func recoveries(env *Env, cfg FailoverConfig, run, n, objects int, progress func(string)) []RecoverResult {
	var out []RecoverResult
	for i := range n {
		mark := env.Mark()
		c := startFailoverCluster(env, cfg.ServerArgs)
		cl := OrchClient(env, c)
		ctx := context.Background()
		if _, err := Load(ctx, cl, FailoverNamespace, "precious", objects, 16); err != nil {
			env.Fatal(err)
		}
		if err := Settle(ctx, cl, c, FailoverNamespace, "settled"); err != nil {
			env.Fatal(err)
		}
		survivor := c.Servers[i%len(c.Servers)]
		for _, s := range c.Servers {
			if s != survivor {
				s.Kill()
			}
		}
		survivor.Stop()
		start := time.Now()
		out1, err := c.Orchd("recover", "--data-dir", survivor.DataDir)
		if err != nil || !strings.Contains(out1, "is now the only voter") {
			env.Fatalf("orchd recover: %v\n%s", err, out1)
		}
		command := time.Since(start)
		if err := survivor.Start(); err != nil {
			env.Fatal(err)
		}
		scl, err := client.New(clusterConfig(c, []string{survivor.URL()}))
		if err != nil {
			env.Fatal(err)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := scl.Create(wctx, ConfigMap(FailoverNamespace, "after-recover", "v"))
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				env.Fatalf("no write acknowledged by the recovered server within a minute: %v", err)
			}
		}
		serving := time.Since(start)
		list, err := scl.ListAll(ctx, api.ConfigMap, FailoverNamespace, client.ListOptions{})
		if err != nil {
			env.Fatal(err)
		}
		kept := 0
		for _, o := range list.Items {
			if strings.HasPrefix(o.GetName(), "precious-") {
				kept++
			}
		}
		if kept != objects {
			env.Fatalf("the recovered server lists %d of the %d ConfigMaps written before the loss", kept, objects)
		}
		r := RecoverResult{Run: run, Objects: objects, CommandMs: Ms(command), ServingMs: Ms(serving), Kept: kept}
		out = append(out, r)
		progress(fmt.Sprintf("failover run %d: quorum-loss recovery %d: orchd recover %.0f ms, first write %.0f ms after it started, %d/%d objects kept",
			run, i+1, r.CommandMs, r.ServingMs, kept, objects))
		env.PopCleanups(mark)
	}
	return out
}
