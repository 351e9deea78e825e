package orchd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/join"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/worker"
)

// workerFlags are the flags of the worker role (orchd agent --worker).
func workerFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "node-label", Usage: "label of this worker's Node, key=value (repeatable)"},
		&cli.StringSliceFlag{Name: "node-taint", Usage: "taint of this worker's Node when it is created, key=value:Effect or key:Effect (repeatable)"},
		&cli.Int64Flag{Name: "gpus", Usage: "nvidia.com/gpu this worker offers"},
		&cli.IntFlag{Name: "max-pods", Value: 110, Usage: "pods this worker runs at most"},
		&cli.IntFlag{Name: "worker-port", Value: agent.DefaultWorkerPort, Usage: "worker API port (logs, exec)"},
		&cli.StringFlag{Name: "containerd-namespace", Value: "orch", Usage: "containerd namespace of this worker's containers"},
		&cli.StringSliceFlag{Name: "cni-bin-dir", Usage: "where the CNI plugins are (default /usr/lib/cni and /opt/cni/bin)"},
		&cli.StringFlag{Name: "pod-bridge", Value: "orch0", Usage: "the pod network's bridge interface"},
		&cli.StringFlag{Name: "proxy-mode", Value: "auto", Usage: "service proxy: auto (IPVS when the kernel has it, else nftables), ipvs, nftables or off"},
		&cli.BoolFlag{Name: "cluster-dns", Value: true, Usage: "serve the cluster DNS on the pod bridge's gateway and point pods at it"},
		&cli.StringFlag{Name: "cluster-domain", Value: "cluster.local", Usage: "the cluster's DNS domain"},
		&cli.BoolFlag{Name: "pod-routes", Value: true, Usage: "route to the other nodes' pod CIDRs through their addresses"},
		&cli.StringFlag{Name: "images-dir", Usage: "image archives (*.tar, OCI or docker) imported at start and whenever one is added (default DATA_DIR/images; '-' for none)"},
		&cli.StringFlag{Name: "runtime-state-dir", Usage: "runtime state (network namespaces, sandboxes); keep it on a tmpfs (default /run/orch/NAME)"},
	}
}

// workerConfig builds the worker's configuration from the agent flags.
func workerConfig(c *cli.Context, cfg agent.Config) (worker.Config, error) {
	wc := worker.Config{
		Name: cfg.Name, DataDir: cfg.DataDir, Bind: cfg.BindAddr, Advertise: cfg.AdvertiseAddr, Join: cfg.Join,
		GossipPort: cfg.GossipPort, APIPort: c.Int("worker-port"), Token: cfg.Token,
		Labels: map[string]string{}, MaxPods: c.Int("max-pods"), GPUs: c.Int64("gpus"), Version: Version,
		ImagesDir: c.String("images-dir"), Logger: cfg.Logger.With("component", "worker"),
		RuntimeConfig: runtime.Config{
			Address: c.String("containerd-socket"), Namespace: c.String("containerd-namespace"),
			StateDir: c.String("runtime-state-dir"),
			Network:  runtime.NetworkConfig{Bridge: c.String("pod-bridge"), PluginDirs: c.StringSlice("cni-bin-dir"), IPMasq: true},
		},
	}
	if wc.ImagesDir == "" && cfg.DataDir != "" {
		// The agent's data dir, also for a worker in a server's process
		// (whose own data dir is DATA_DIR/worker).
		wc.ImagesDir = filepath.Join(cfg.DataDir, "images")
	}
	wc.Kubelet.Tmpfs = os.Geteuid() == 0
	wc.Network = worker.NetworkConfig{ProxyMode: c.String("proxy-mode"), DNS: c.Bool("cluster-dns"),
		Zone: c.String("cluster-domain"), Routes: c.Bool("pod-routes")}
	switch wc.Network.ProxyMode {
	case "auto", "ipvs", "nftables", "off":
	default:
		return wc, fmt.Errorf("--proxy-mode %q: want auto, ipvs, nftables or off", wc.Network.ProxyMode)
	}
	for _, l := range c.StringSlice("node-label") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return wc, fmt.Errorf("--node-label %q: must be key=value", l)
		}
		wc.Labels[k] = v
	}
	for _, s := range c.StringSlice("node-taint") {
		t, err := parseTaint(s)
		if err != nil {
			return wc, err
		}
		wc.Taints = append(wc.Taints, t)
	}
	if wc.GPUs < 0 {
		return wc, errors.New("--gpus: must be >= 0")
	}
	if wc.MaxPods <= 0 {
		return wc, errors.New("--max-pods: must be at least 1")
	}
	return wc, nil
}

// parseTaint reads key=value:Effect or key:Effect.
func parseTaint(s string) (corev1.Taint, error) {
	kv, effect, ok := strings.Cut(s, ":")
	k, v, _ := strings.Cut(kv, "=")
	t := corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)}
	switch t.Effect {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		ok = false
	}
	if !ok || k == "" {
		return t, fmt.Errorf("--node-taint %q: must be key=value:Effect or key:Effect, Effect one of NoSchedule, PreferNoSchedule, NoExecute", s)
	}
	return t, nil
}

// runWorker runs `orchd agent --worker` without --server.
func runWorker(c *cli.Context, cfg agent.Config) error {
	if cfg.DataDir == "" {
		return errors.New("--data-dir: required")
	}
	if ip := net.ParseIP(cfg.BindAddr); ip != nil && !ip.IsLoopback() && cfg.Token == "" {
		return fmt.Errorf("--token: required when listening on the non-loopback address %s", cfg.BindAddr)
	}
	wc, err := workerConfig(c, cfg)
	if err != nil {
		return err
	}
	if _, err := join.Parse(cfg.Token); err == nil {
		// A join token, not the cluster secret: the worker joins through
		// the API at --join and keeps its certificate (node/worker/tls.go).
		wc.JoinToken, wc.Token = cfg.Token, ""
	}
	w, err := worker.New(wc)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	cfg.Logger.Info("starting the worker", "join", cfg.Join, "data-dir", cfg.DataDir)
	err = w.Run(ctx)
	cfg.Logger.Info("worker stopped; its pods keep running")
	return err
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
	wc, err := workerConfig(c, cfg)
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
