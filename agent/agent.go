package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	autopilot "github.com/hashicorp/raft-autopilot"

	"orch.dev/orch/fsm"
)

// LeaderFunc is a component that runs on the Raft leader only (scheduler,
// controllers). It is started after the new leader's barrier and must return
// promptly when ctx is cancelled, which happens the moment leadership is lost.
type LeaderFunc func(ctx context.Context, a *Agent)

// Agent is one orchd process.
type Agent struct {
	cfg    Config
	logger *slog.Logger

	fsm    *fsm.FSM
	node   *raftNode
	raft   *raft.Raft
	gossip *gossip
	pilot  *autopilot.Autopilot
	secret string      // the cluster secret: --token, or generated (tls_secret.go)
	tls    *clusterTLS // the cluster CA and this server's certificate

	httpLn       net.Listener
	httpServer   *http.Server
	peerClient   *http.Client // server-to-server calls (forwarding, status)
	workerClient *http.Client // calls to workers' APIs (tls_http.go)

	proposer  *proposer  // batches concurrent writes into Raft entries
	gate      applyGate  // lets a snapshot restore pause the proposer
	disk      diskGuard  // free space of the data dir
	verifier  *coalescer // batches VerifyLeader rounds for linearizable reads
	readIndex *coalescer // batches a follower's read-index requests

	box    secretBoxOnce // seals Secrets at rest (secrets_crypt.go)
	tokens tokenCache    // verified user tokens (tokens_auth.go)
	audit  *auditLog     // <data-dir>/audit.log (audit.go)

	leaderMu    sync.Mutex
	leaderReady bool          // this server is leader and its barrier is done
	leaderWake  chan struct{} // closed and replaced when leadership or the leader changes

	beats        heartbeats
	notifyCh     chan bool
	removed      chan struct{}
	removedOnce  sync.Once
	leaderFuncs  []LeaderFunc
	stop         chan struct{}
	stopOnce     sync.Once
	shuttingDown atomic.Bool
	// batches and batchedWrites count what the batch endpoint received (batch.go).
	batches, batchedWrites atomic.Uint64
	wg                     sync.WaitGroup
}

// New validates cfg and prepares an agent; Start runs it.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if !cfg.Server {
		return nil, errors.New("--server: this agent has no role (the worker role arrives with the node agent)")
	}
	a := &Agent{
		cfg:        cfg,
		logger:     cfg.Logger,
		leaderWake: make(chan struct{}),
		notifyCh:   make(chan bool, 16),
		removed:    make(chan struct{}),
		stop:       make(chan struct{}),
		disk:       diskGuard{kick: make(chan struct{}, 1)},
	}
	a.audit = newAuditLog(cfg.DataDir, cfg.Logger)
	a.fsm = fsm.New(fsm.Config{Logger: a.logger.With("component", "fsm"), HistorySize: cfg.WatchHistory})
	a.peerClient = a.newPeerClient() // tls_http.go
	a.workerClient = a.newWorkerClient()
	a.verifier = newCoalescer(func() (uint64, error) {
		return 0, a.raft.VerifyLeader().Error()
	})
	a.readIndex = newCoalescer(a.fetchReadIndex)
	a.proposer = newProposer(a.gatedApply, a.stop, maxInflight)
	a.leaderFuncs = append(a.leaderFuncs, a.storeClusterCA)     // tls_store.go
	a.leaderFuncs = append(a.leaderFuncs, a.pruneExpiredTokens) // tokens_prune.go
	return a, nil
}

// OnLeader registers a leader-only component; call before Start.
func (a *Agent) OnLeader(f LeaderFunc) { a.leaderFuncs = append(a.leaderFuncs, f) }

// IsReadyLeader reports whether this server leads and has finished its
// barrier (leader-only components are running).
func (a *Agent) IsReadyLeader() bool {
	a.leaderMu.Lock()
	defer a.leaderMu.Unlock()
	return a.leaderReady && a.raft.State() == raft.Leader
}

// RaftState is this server's Raft role.
func (a *Agent) RaftState() raft.RaftState { return a.raft.State() }

// FSM exposes the local state machine (read-only use).
func (a *Agent) FSM() *fsm.FSM { return a.fsm }

// Logger is the agent's logger.
func (a *Agent) Logger() *slog.Logger { return a.logger }

// HTTPAddr is the address the API listens on.
func (a *Agent) HTTPAddr() string { return a.httpLn.Addr().String() }

// Start opens the data dir, starts Raft, the API and gossip, and joins.
func (a *Agent) Start() error {
	cfg := &a.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	}
	if err := a.recordIdentity(); err != nil {
		return err
	}
	secret, err := a.clusterSecret()
	if err != nil {
		return err
	}
	a.secret, a.tls = secret, newClusterTLS(cfg, secret)
	if err := a.tls.load(time.Now()); err != nil {
		return err
	}
	node, err := a.setupRaft(a.notifyCh)
	if err != nil {
		return err
	}
	a.node, a.raft = node, node.raft
	a.raft.RegisterObserver(raft.NewObserver(a.observations(), false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	}))

	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.HTTPPort)))
	if err != nil {
		node.shutdown()
		return fmt.Errorf("--http-port: %w", err)
	}
	a.httpLn = ln
	ln = a.tlsListener(ln) // tls_http.go
	a.httpServer = &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return a.stopContext() },
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.httpServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("http server stopped", "err", err)
		}
	}()

	ring, err := a.initialGossipKeyring(secret) // gossip_keyring.go
	if err != nil {
		a.httpServer.Close()
		node.shutdown()
		return err
	}
	g, err := newGossip(cfg, ring, memberMeta{Role: RoleServer, HTTP: cfg.httpAddr(), Raft: cfg.raftAddr(), Expect: cfg.BootstrapExpect, Version: cfg.Version},
		a.gossipLocalState, a.gossipMergeState)
	if err != nil {
		a.httpServer.Close()
		node.shutdown()
		return err
	}
	a.gossip = g
	a.pilot = autopilot.New(a.raft, &pilotDelegate{a: a}, autopilot.WithLogger(a.hclog("autopilot")),
		autopilot.WithReconcileInterval(time.Second), autopilot.WithUpdateInterval(time.Second))

	a.goRun(a.monitorLeadership)
	a.goRun(a.proposer.run)
	a.goRun(func() { g.joinLoop(cfg.Join, DefaultGossipPort, a.stop) })
	a.goRun(a.rememberPeersLoop)
	a.goRun(a.fetchCALoop)
	a.goRun(a.gossipKeyringLoop)
	a.goRun(func() { a.tls.rotateLoop(a.stop) })
	a.goRun(a.writeAdminConf)
	a.startHA()
	if cfg.BootstrapExpect > 0 && !node.hadState {
		a.goRun(a.bootstrapLoop)
	}
	a.logger.Info("agent started", "http", cfg.httpAddr(), "raft", cfg.raftAddr(), "gossip", cfg.gossipAddr(),
		"bootstrap_expect", cfg.BootstrapExpect, "existing_state", node.hadState, "auth", !a.authDisabled())
	return nil
}

func (a *Agent) goRun(f func()) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
}

func (a *Agent) stopContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-a.stop
		cancel()
	}()
	return ctx
}

// observations turns Raft leader observations into leaderWake broadcasts,
// and notices when Raft shuts itself down because this server was removed
// from the configuration.
func (a *Agent) observations() chan raft.Observation {
	ch := make(chan raft.Observation, 64)
	a.goRun(func() {
		for {
			select {
			case o := <-ch:
				a.wakeLeaderWaiters()
				if st, ok := o.Data.(raft.RaftState); ok && st == raft.Shutdown && !a.shuttingDown.Load() {
					a.logger.Error("this server was removed from the Raft configuration; stopping (clear its data dir to rejoin as a new server)")
					a.removedOnce.Do(func() { close(a.removed) })
				}
			case <-a.stop:
				return
			}
		}
	})
	return ch
}

// Removed is closed when this server was removed from the cluster while
// running; the process should then shut down.
func (a *Agent) Removed() <-chan struct{} { return a.removed }

func (a *Agent) wakeLeaderWaiters() {
	a.leaderMu.Lock()
	close(a.leaderWake)
	a.leaderWake = make(chan struct{})
	a.leaderMu.Unlock()
}

func (a *Agent) rememberPeersLoop() {
	for {
		select {
		case <-a.gossip.Changed():
			a.gossip.rememberPeers()
		case <-a.stop:
			return
		}
	}
}

// Shutdown stops the agent gracefully: a leader first hands leadership to
// another server so that clients see no failed request, then the API stops,
// the agent leaves gossip and Raft shuts down. The server stays a Raft
// member: a restart with the same data dir rejoins.
func (a *Agent) Shutdown(ctx context.Context) error {
	if !a.shuttingDown.CompareAndSwap(false, true) {
		return nil
	}
	if a.raft != nil && a.raft.State() == raft.Leader && a.hasOtherVoters() {
		a.logger.Info("transferring leadership before shutdown")
		for attempt := 1; ; attempt++ {
			err := a.raft.LeadershipTransfer().Error()
			if err == nil {
				a.waitForOtherLeader(ctx)
				break
			}
			a.logger.Warn("leadership transfer failed", "attempt", attempt, "err", err)
			if attempt == 3 || a.raft.State() != raft.Leader || ctx.Err() != nil {
				break
			}
		}
	}
	if a.httpServer != nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		a.stopOnce.Do(func() { close(a.stop) })
		a.httpServer.Shutdown(sctx)
		cancel()
	}
	a.stopOnce.Do(func() { close(a.stop) })
	if a.gossip != nil {
		a.gossip.leave(2 * time.Second)
	}
	var err error
	if a.node != nil {
		err = a.node.shutdown()
	}
	a.fsm.History().Close()
	a.audit.close()
	a.wg.Wait()
	a.logger.Info("agent stopped")
	return err
}

func (a *Agent) hasOtherVoters() bool {
	f := a.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(a.cfg.Name) {
			return true
		}
	}
	return false
}

// waitForOtherLeader waits until another server is known as leader, so that
// requests this server still forwards find it.
func (a *Agent) waitForOtherLeader(ctx context.Context) {
	deadline := time.After(5 * time.Second)
	for {
		a.leaderMu.Lock()
		wake := a.leaderWake
		a.leaderMu.Unlock()
		if _, id := a.raft.LeaderWithID(); id != "" && id != raft.ServerID(a.cfg.Name) {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}
