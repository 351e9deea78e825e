package agent

import (
	"orch.dev/orch/internal/atomicfile"

	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// identityFile records which server a data dir belongs to and where it was
// reachable, so that `orchd recover` can rebuild the Raft configuration on
// its own (no hand-written peers.json) and a data dir is never started
// under another server's name.
const identityFile = "server.json"

// Identity is what a server records about itself in its data dir.
type Identity struct {
	Name        string `json:"name"`
	RaftAddress string `json:"raftAddress"`
	HTTPAddress string `json:"httpAddress"`
}

// ErrNoIdentity means a data dir holds no server.json (it predates it, or
// no server ever ran on it).
var ErrNoIdentity = errors.New("no server identity recorded")

// ReadIdentity reads the identity recorded in dataDir.
func ReadIdentity(dataDir string) (Identity, error) {
	var id Identity
	b, err := os.ReadFile(filepath.Join(dataDir, identityFile))
	if errors.Is(err, os.ErrNotExist) {
		return id, fmt.Errorf("%s: %w", filepath.Join(dataDir, identityFile), ErrNoIdentity)
	}
	if err != nil {
		return id, err
	}
	if err := json.Unmarshal(b, &id); err != nil || id.Name == "" {
		return id, fmt.Errorf("%s: not a server identity file: %v", filepath.Join(dataDir, identityFile), err)
	}
	return id, nil
}

// recordIdentity checks that the data dir is this server's (or nobody's
// yet) and records the addresses it runs with now.
func (a *Agent) recordIdentity() error {
	cfg := &a.cfg
	prev, err := ReadIdentity(cfg.DataDir)
	switch {
	case err == nil && prev.Name != cfg.Name:
		return fmt.Errorf("--name %s: the data dir %s belongs to server %q (its Raft identity); start it as --name %s, or use an empty data dir for a new server",
			cfg.Name, cfg.DataDir, prev.Name, prev.Name)
	case err != nil && !errors.Is(err, ErrNoIdentity):
		return err
	}
	id := Identity{Name: cfg.Name, RaftAddress: cfg.raftAddr(), HTTPAddress: cfg.httpAddr()}
	if prev == id {
		return nil
	}
	b, _ := json.MarshalIndent(id, "", "  ")
	return atomicfile.Write(filepath.Join(cfg.DataDir, identityFile), append(b, '\n'), 0o600)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
