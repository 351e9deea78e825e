// Package workercmd is the command line of a worker agent: the flags of
// `orchd agent --worker` and of the orch-worker binary (cmd/orch-worker),
// which runs the same worker without linking the server. It turns flags
// into a worker.Config and runs the worker until SIGTERM or SIGINT.
//
// It must never import the server (agent, fsm, sched, ctrl, Raft,
// go-memdb): every package orch-worker links costs each worker machine
// memory (BENCHMARKS.md, pods), and the test in this package checks it.
package workercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/internal/join"
	"orch.dev/orch/internal/logging"
	"orch.dev/orch/node/worker"
)

// Version is set at build time with -ldflags "-X orch.dev/orch/internal/workercmd.Version=...".
var Version = "dev"

// Settings are the node's settings from NodeFlags, which `orchd agent`
// reads into its own configuration.
type Settings struct {
	Name, DataDir   string
	Bind, Advertise string
	GossipPort      int
	Join            []string
	Token           string // the cluster secret or a join token
	Version         string
	Logger          *slog.Logger
}

// Main runs orch-worker with args and returns the exit code.
func Main(args []string, stderr io.Writer) int {
	app := &cli.App{
		Name:           "orch-worker",
		Usage:          "the orch worker agent: what `orchd agent --worker` runs, in a binary without the control plane",
		Version:        Version,
		Writer:         stderr,
		ErrWriter:      stderr,
		Flags:          append(NodeFlags(), Flags()...),
		Action:         func(c *cli.Context) error { return run(c, stderr) },
		ExitErrHandler: func(*cli.Context, error) {},
	}
	if err := app.Run(args); err != nil {
		fmt.Fprintf(stderr, "orch-worker: %v\n", err)
		return 1
	}
	return 0
}

func run(c *cli.Context, stderr io.Writer) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags only)", c.Args().First())
	}
	level, ok := logging.ParseLevel(c.String("log-level"))
	if !ok {
		return fmt.Errorf("--log-level %q: use debug, info, warn or error", c.String("log-level"))
	}
	token, err := Token(c)
	if err != nil {
		return err
	}
	name, err := NodeName(c.String("name"))
	if err != nil {
		return err
	}
	return Run(c, Settings{
		Name: name, DataDir: c.String("data-dir"),
		Bind: c.String("bind"), Advertise: c.String("advertise"), GossipPort: c.Int("gossip-port"),
		Join: c.StringSlice("join"), Token: token, Version: Version,
		Logger: logging.New(stderr, level, name),
	})
}

// Run runs a worker alone in its process (`orchd agent --worker` without
// --server, or orch-worker) until SIGTERM or SIGINT, with the collector
// set for a worker (gc.go). Its pods keep running after it stops.
func Run(c *cli.Context, s Settings) error {
	if s.DataDir == "" {
		return errors.New("--data-dir: required")
	}
	if ip := net.ParseIP(s.Bind); ip != nil && !ip.IsLoopback() && s.Token == "" {
		return fmt.Errorf("--token: required when listening on the non-loopback address %s", s.Bind)
	}
	wc, err := Config(c, s)
	if err != nil {
		return err
	}
	if _, err := join.Parse(s.Token); err == nil {
		// A join token, not the cluster secret: the worker joins through
		// the API at --join and keeps its certificate (node/worker/tls.go).
		wc.JoinToken, wc.Token = s.Token, ""
	}
	w, err := worker.New(wc)
	if err != nil {
		return err
	}
	setGCPercent(os.Getenv) // gc.go
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s.Logger.Info("starting the worker", "join", s.Join, "data-dir", s.DataDir)
	err = w.Run(ctx)
	s.Logger.Info("worker stopped; its pods keep running")
	return err
}
