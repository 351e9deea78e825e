package workercmd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/internal/netdefaults"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/node/worker"
)

// NodeFlags are the flags every agent has, server or worker: who it is,
// where it keeps its state, how it reaches the cluster. `orchd agent` has
// them too, so both binaries read them the same way.
func NodeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "name", Usage: "node name, unique in the cluster (default: the hostname)"},
		&cli.StringFlag{Name: "data-dir", Usage: "where Raft data and local state live"},
		&cli.StringFlag{Name: "bind", Value: "127.0.0.1", Usage: "IP address to listen on"},
		&cli.StringFlag{Name: "advertise", Usage: "IP address peers use to reach this node (default: --bind)"},
		&cli.IntFlag{Name: "gossip-port", Value: netdefaults.GossipPort, Usage: "gossip port (TCP and UDP)"},
		&cli.StringSliceFlag{Name: "join", Usage: "address of any member to join (repeatable)"},
		&cli.StringFlag{Name: "containerd-socket", Value: "/run/containerd/containerd.sock", Usage: "containerd socket (workers)"},
		&cli.StringFlag{Name: "token", EnvVars: []string{"ORCH_TOKEN"}, Usage: "cluster secret: API bearer token, Raft authentication, gossip encryption (required off loopback)"},
		&cli.StringFlag{Name: "token-file", Usage: "read --token from this file"},
		&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
	}
}

// Flags are the flags of the worker role.
func Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "node-label", Usage: "label of this worker's Node, key=value (repeatable)"},
		&cli.StringSliceFlag{Name: "node-taint", Usage: "taint of this worker's Node when it is created, key=value:Effect or key:Effect (repeatable)"},
		&cli.Int64Flag{Name: "gpus", Usage: "nvidia.com/gpu this worker offers"},
		&cli.IntFlag{Name: "max-pods", Value: 110, Usage: "pods this worker runs at most"},
		&cli.IntFlag{Name: "worker-port", Value: netdefaults.WorkerPort, Usage: "worker API port (logs, exec)"},
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

// Token is --token, or what --token-file holds.
func Token(c *cli.Context) (string, error) {
	f := c.String("token-file")
	if f == "" {
		return c.String("token"), nil
	}
	b, err := os.ReadFile(f)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("--token-file %s: file is empty", f)
	}
	return t, nil
}

// NodeName is name, or the hostname in lower case when name is empty.
func NodeName(name string) (string, error) {
	if name != "" {
		return name, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("--name: required (hostname unavailable: %v)", err)
	}
	return strings.ToLower(host), nil
}

// Config builds the worker's configuration from the worker flags and the
// node's settings s.
func Config(c *cli.Context, s Settings) (worker.Config, error) {
	wc := worker.Config{
		Name: s.Name, DataDir: s.DataDir, Bind: s.Bind, Advertise: s.Advertise, Join: s.Join,
		GossipPort: s.GossipPort, APIPort: c.Int("worker-port"), Token: s.Token,
		Labels: map[string]string{}, MaxPods: c.Int("max-pods"), GPUs: c.Int64("gpus"), Version: s.Version,
		ImagesDir: c.String("images-dir"), Logger: s.Logger.With("component", "worker"),
		RuntimeConfig: runtime.Config{
			Address: c.String("containerd-socket"), Namespace: c.String("containerd-namespace"),
			StateDir: c.String("runtime-state-dir"),
			Network:  runtime.NetworkConfig{Bridge: c.String("pod-bridge"), PluginDirs: c.StringSlice("cni-bin-dir"), IPMasq: true},
		},
	}
	if wc.ImagesDir == "" && s.DataDir != "" {
		// The agent's data dir, also for a worker in a server's process
		// (whose own data dir is DATA_DIR/worker).
		wc.ImagesDir = filepath.Join(s.DataDir, "images")
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
