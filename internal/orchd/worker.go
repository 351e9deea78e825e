package orchd

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/agent"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/workercmd"
	"orch.dev/orch/node/worker"
)

// workerSettings are the node settings of a worker run by `orchd agent`.
func workerSettings(cfg agent.Config) workercmd.Settings {
	return workercmd.Settings{
		Name: cfg.Name, DataDir: cfg.DataDir, Bind: cfg.BindAddr, Advertise: cfg.AdvertiseAddr,
		GossipPort: cfg.GossipPort, Join: cfg.Join, Token: cfg.Token, Version: Version, Logger: cfg.Logger,
	}
}

// runWorker runs `orchd agent --worker` without --server: the same worker
// as orch-worker (internal/workercmd).
func runWorker(c *cli.Context, cfg agent.Config) error {
	return workercmd.Run(c, workerSettings(cfg))
}

// startLocalWorker runs a worker in the same process as server a (with
// --worker, or --dev) against a's API. With --dev and no containerd to
// talk to, the agent runs as a server only, and says so. The returned
// function stops the worker.
func startLocalWorker(c *cli.Context, cfg agent.Config, a *agent.Agent) (func(), error) {
	if !c.Bool("worker") && !c.Bool("dev") {
		return func() {}, nil
	}
	sock := c.String("containerd-socket")
	conn, err := net.DialTimeout("unix", sock, time.Second)
	if err != nil {
		if !c.Bool("worker") {
			cfg.Logger.Warn("no containerd: this dev agent runs no pods (start one with scripts/containerd.sh start and pass --containerd-socket)",
				"socket", sock, "err", err)
			return func() {}, nil
		}
		return nil, fmt.Errorf("--containerd-socket %s: %w", sock, err)
	}
	conn.Close()
	wc, err := workercmd.Config(c, workerSettings(cfg))
	if err != nil {
		return nil, err
	}
	wc.DataDir = filepath.Join(cfg.DataDir, "worker")
	wc.Join, wc.Servers = nil, []string{a.URL()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		select { // the worker speaks HTTPS: it needs the cluster CA
		case <-a.TLSReady():
		case <-ctx.Done():
			return
		}
		wc.TLS = client.TLS{CAPEM: a.CACertPEM()}
		if !cfg.Insecure {
			wc.CA = a.ClusterCA() // for its worker API certificate
		}
		wc.Token = a.ClusterSecret()
		w, err := worker.New(wc)
		if err == nil {
			err = w.Run(ctx)
		}
		if err != nil {
			cfg.Logger.Error("worker stopped", "err", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}, nil
}
