package orchd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/api/resource"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/gossipmeta"
	"orch.dev/orch/internal/logging"
	"orch.dev/orch/internal/pki"
	"orch.dev/orch/node"
	"orch.dev/orch/node/sim"
)

func simulateCommand(stderr io.Writer) *cli.Command {
	return &cli.Command{
		Name:  "simulate",
		Usage: "run N simulated worker nodes (labelled orch.dev/simulated=true) that report their pods Running and Ready",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "join", Usage: "address of any cluster member to join (repeatable)"},
			&cli.IntFlag{Name: "nodes", Usage: "how many nodes to simulate"},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1", Usage: "IP address to gossip from"},
			&cli.IntFlag{Name: "gossip-port", Value: 7402, Usage: "gossip port"},
			&cli.StringFlag{Name: "name", Usage: "gossip member name (default: simulator-<hostname>)"},
			&cli.StringFlag{Name: "prefix", Value: "sim-", Usage: "node name prefix"},
			&cli.StringFlag{Name: "cpu", Value: "4", Usage: "CPU of each node"},
			&cli.StringFlag{Name: "memory", Value: "8Gi", Usage: "memory of each node"},
			&cli.Int64Flag{Name: "pods", Value: 110, Usage: "pods each node can run"},
			&cli.Int64Flag{Name: "gpus", Usage: "nvidia.com/gpu each node advertises"},
			&cli.StringSliceFlag{Name: "label", Usage: "extra node label key=value (repeatable)"},
			&cli.StringFlag{Name: "token", EnvVars: []string{"ORCH_TOKEN"}, Usage: "cluster token"},
			&cli.BoolFlag{Name: "keep-nodes", Usage: "leave the nodes registered when stopping"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
		},
		Action: func(c *cli.Context) error { return runSimulate(c, stderr) },
	}
}

func simConfig(c *cli.Context) (sim.Config, error) {
	cfg := sim.Config{Prefix: c.String("prefix"), Nodes: c.Int("nodes"), Pods: c.Int64("pods"), GPUs: c.Int64("gpus"), Labels: map[string]string{}}
	var err error
	if cfg.CPU, err = resource.ParseQuantity(c.String("cpu")); err != nil || cfg.CPU.Sign() <= 0 {
		return cfg, fmt.Errorf("--cpu %q: must be a positive quantity such as 4 or 500m", c.String("cpu"))
	}
	if cfg.Memory, err = resource.ParseQuantity(c.String("memory")); err != nil || cfg.Memory.Sign() <= 0 {
		return cfg, fmt.Errorf("--memory %q: must be a positive quantity such as 8Gi", c.String("memory"))
	}
	if cfg.Nodes <= 0 {
		return cfg, errors.New("--nodes: must be at least 1")
	}
	if cfg.Pods <= 0 {
		return cfg, errors.New("--pods: must be at least 1")
	}
	if cfg.GPUs < 0 {
		return cfg, errors.New("--gpus: must be >= 0")
	}
	for _, l := range c.StringSlice("label") {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return cfg, fmt.Errorf("--label %q: must be key=value", l)
		}
		cfg.Labels[k] = v
	}
	return cfg, nil
}

func runSimulate(c *cli.Context, stderr io.Writer) error {
	level, ok := logging.ParseLevel(c.String("log-level"))
	if !ok {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	cfg, err := simConfig(c)
	if err != nil {
		return err
	}
	if len(c.StringSlice("join")) == 0 {
		return errors.New("--join: required (the address of any cluster member)")
	}
	name := c.String("name")
	if name == "" {
		host, _ := os.Hostname()
		name = "simulator-" + strings.ToLower(host)
	}
	log := logging.New(stderr, level, name)
	cfg.Logger = log
	m, err := node.Join(node.MembershipConfig{Name: name, BindAddr: c.String("bind"), GossipPort: c.Int("gossip-port"),
		Join: c.StringSlice("join"), Token: c.String("token"), Logger: log}, 30*time.Second)
	if err != nil {
		return err
	}
	defer m.Leave()
	servers, err := m.WaitServers(30 * time.Second)
	if err != nil {
		return err
	}
	ca, err := m.WaitClusterCA(30 * time.Second) // opened with --token
	if err != nil {
		return err
	}
	cl, err := client.New(client.Config{Servers: servers, Token: c.String("token"), UserAgent: "orchd-simulate",
		TLS: client.TLS{CAPEM: pki.CertPEM(ca.Cert)}})
	if err != nil {
		return err
	}
	s, err := sim.New(cfg, cl)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// Follow gossip key rotations (node/keyring.go); nothing is kept on
	// disk: a restarted simulator joins with --token's key.
	go m.FollowKeyring(ctx, func(ctx context.Context) (gossipmeta.Keyring, error) {
		var k gossipmeta.Keyring
		err := cl.GetJSON(ctx, "/v1/gossip/keyring", url.Values{"stale": {"true"}}, &k)
		return k, err
	}, "", 2*time.Second)
	if err := s.Register(ctx); err != nil {
		return err
	}
	log.Info("simulating nodes", "nodes", cfg.Nodes, "prefix", cfg.Prefix, "servers", servers)
	err = s.Run(ctx)
	if !c.Bool("keep-nodes") {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		s.Deregister(dctx)
		cancel()
	}
	return err
}
