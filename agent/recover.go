package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/logging"
)

// Errors of Recover that an operator acts on.
var (
	// ErrDataDirInUse means an orchd process holds the data dir's Raft log.
	ErrDataDirInUse = errors.New("data dir in use")
	// ErrNoRaftState means the data dir holds nothing to recover.
	ErrNoRaftState = errors.New("no Raft state")
)

// RecoverOptions name the stopped server to recover.
type RecoverOptions struct {
	DataDir string
	// Name is the server's Raft ID. Optional when the data dir records it
	// (server.json); when both are given they must agree.
	Name   string
	Logger *slog.Logger
}

// RecoverResult says what Recover did.
type RecoverResult struct {
	ID      string
	Address string
	// Previous is the configuration the server had before.
	Previous []raft.Server
	// LastIndex is the index of the recovered state (every entry of the
	// local log, committed or not, is now part of it).
	LastIndex uint64
}

// Recover makes the stopped server whose data dir is opts.DataDir the only
// voter of its Raft configuration (raft.RecoverCluster), for a cluster that
// lost its quorum for good. Every entry in the local log becomes committed.
// It refuses when an orchd process holds the data dir or the data dir has no
// Raft state, and changes nothing then.
func Recover(opts RecoverOptions) (res RecoverResult, err error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if opts.DataDir == "" {
		return res, errors.New("--data-dir: required")
	}
	dir := filepath.Join(opts.DataDir, "raft")
	dbPath := filepath.Join(dir, "raft.db")
	if _, err := os.Stat(dbPath); err != nil {
		return res, fmt.Errorf("%w in %s (no %s): nothing to recover; is --data-dir the server's data dir?", ErrNoRaftState, opts.DataDir, dbPath)
	}
	id, idErr := ReadIdentity(opts.DataDir)
	switch {
	case idErr == nil && opts.Name != "" && opts.Name != id.Name:
		return res, fmt.Errorf("--name %s: the data dir %s belongs to server %q", opts.Name, opts.DataDir, id.Name)
	case idErr != nil && !errors.Is(idErr, ErrNoIdentity):
		return res, idErr
	case idErr != nil && opts.Name == "":
		return res, fmt.Errorf("--name: required, the data dir %s does not record which server it belongs to (%v)", opts.DataDir, idErr)
	case idErr != nil:
		id = Identity{Name: opts.Name}
	}

	// bbolt locks the file: while orchd runs, opening it times out.
	store, err := raftboltdb.New(raftboltdb.Options{Path: dbPath,
		BoltOptions: &bbolt.Options{Timeout: 500 * time.Millisecond, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType}})
	if errors.Is(err, bbolt.ErrTimeout) {
		return res, fmt.Errorf("%w: an orchd process is running on %s (%s is locked); stop it first", ErrDataDirInUse, opts.DataDir, dbPath)
	}
	if err != nil {
		return res, fmt.Errorf("open %s: %w", dbPath, err)
	}
	defer store.Close()
	noState := fmt.Errorf("%w in %s: the server never joined a cluster, nothing to recover", ErrNoRaftState, opts.DataDir)
	term, _ := store.GetUint64([]byte("CurrentTerm"))
	last, err := store.LastIndex()
	if err != nil {
		return res, err
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshots")); err != nil && term == 0 && last == 0 {
		return res, noState // checked before the snapshot store creates its directory
	}
	hlog := logging.Hclog(logger, "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		return res, fmt.Errorf("open snapshot store: %w", err)
	}
	if ok, err := raft.HasExistingState(store, store, snaps); err != nil {
		return res, err
	} else if !ok {
		return res, noState
	}

	// A log entry written by a newer orch stops the replay with an error
	// rather than a recovered state that silently lacks it.
	defer func() {
		if v := recover(); v != nil {
			h, ok := v.(haltError)
			if !ok {
				panic(v)
			}
			err = fmt.Errorf("recover with the orch version that wrote this log: %w", h.error)
		}
	}()
	newFSM := func() *fsm.FSM {
		return fsm.New(fsm.Config{Logger: logger.With("component", "fsm"), Halt: func(e error) { panic(haltError{e}) }})
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id.Name)
	rc.Logger = hlog
	_, trans := raft.NewInmemTransport(raft.ServerAddress(id.RaftAddress))
	defer trans.Close()
	prev, err := raft.GetConfiguration(rc, newFSM(), store, store, snaps, trans)
	if err != nil {
		return res, fmt.Errorf("reading the Raft configuration: %w", err)
	}
	res.Previous = prev.Servers
	if id.RaftAddress == "" {
		for _, s := range prev.Servers {
			if s.ID == raft.ServerID(id.Name) {
				id.RaftAddress = string(s.Address)
			}
		}
		if id.RaftAddress == "" {
			return res, fmt.Errorf("--name %s: not in the Raft configuration of %s, and the data dir records no address", id.Name, opts.DataDir)
		}
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(id.Name), Address: raft.ServerAddress(id.RaftAddress)}}}
	rc = raft.DefaultConfig()
	rc.LocalID = raft.ServerID(id.Name)
	rc.Logger = hlog
	if err := raft.RecoverCluster(rc, newFSM(), store, store, snaps, trans, conf); err != nil {
		return res, fmt.Errorf("recovering the Raft configuration: %w", err)
	}
	list, err := snaps.List()
	if err == nil && len(list) > 0 {
		res.LastIndex = list[0].Index
	}
	// The remembered gossip peers are the lost servers: joining them again
	// would only retry forever.
	os.Remove(filepath.Join(opts.DataDir, peersFile))
	res.ID, res.Address = id.Name, id.RaftAddress
	logger.Info("recovered: this server is now the only voter", "id", id.Name, "address", id.RaftAddress, "index", res.LastIndex)
	return res, nil
}

type haltError struct{ error }
