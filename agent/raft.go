package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"orch.dev/orch/internal/logging"
	"orch.dev/orch/internal/rafttls"
)

// raftNode bundles the Raft instance with the stores it must close.
type raftNode struct {
	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	snapshots raft.SnapshotStore
	transport *watchdogTransport
	// hadState is true when the data dir held Raft state at start.
	hadState bool
}

func (a *Agent) setupRaft(notify chan bool) (*raftNode, error) {
	cfg := &a.cfg
	dir := filepath.Join(cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	hlog := logging.Hclog(a.logger, "raft")
	// The freelist is rebuilt on open instead of written on every commit,
	// as etcd does: fewer pages per fsync. fsync itself stays on.
	store, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db"),
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", filepath.Join(dir, "raft.db"), err)
	}
	logs, err := raft.NewLogCache(1024, store)
	if err != nil {
		store.Close()
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	hadState, err := raft.HasExistingState(logs, store, snaps)
	if err != nil {
		store.Close()
		return nil, err
	}
	// Raft speaks mutual TLS, server certificates at both ends; until this
	// server has the cluster CA it refuses connections and its dials fail.
	stream, err := rafttls.Listen(rafttls.Config{
		Bind:      net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.RaftPort)),
		Advertise: cfg.raftAddr(),
		GetConfig: a.tls.raftConfig,
		Logger:    a.logger.With("component", "raft-tls"),
	})
	if err != nil {
		store.Close()
		return nil, err
	}
	// Pipelined replication (raft's default of 2 RPCs in flight), with
	// pipelines that cannot wedge a shutdown: see watchdogTransport.
	transport := &watchdogTransport{
		NetworkTransport: raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  stream,
			MaxPool: 4,
			Timeout: 10 * time.Second,
			Logger:  hlog,
		}),
		limit: pipelineStallLimit,
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.HeartbeatTimeout = cfg.Raft.HeartbeatTimeout
	rc.ElectionTimeout = cfg.Raft.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.Raft.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.Raft.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 512
	rc.BatchApplyCh = true
	rc.NotifyCh = notify
	rc.Logger = hlog
	r, err := raft.NewRaft(rc, a.fsm, logs, store, snaps, transport)
	if err != nil {
		transport.Close()
		store.Close()
		return nil, fmt.Errorf("start raft: %w", err)
	}
	return &raftNode{raft: r, store: store, snapshots: snaps, transport: transport, hadState: hadState}, nil
}

func (n *raftNode) shutdown() error {
	err := n.raft.Shutdown().Error()
	n.transport.Close()
	if cerr := n.store.Close(); err == nil {
		err = cerr
	}
	return err
}
