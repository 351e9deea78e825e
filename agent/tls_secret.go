package agent

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"orch.dev/orch/internal/atomicfile"
)

// clusterSecretFile holds the cluster secret a single loopback server
// generated for itself because it was started without --token.
const clusterSecretFile = "cluster-secret"

// needsToken reports why this configuration cannot run without --token:
// servers of a multi-server cluster must share the secret.
func (c *Config) needsToken() error {
	if c.Token != "" {
		return nil
	}
	if c.BootstrapExpect > 1 || len(c.Join) > 0 {
		return errors.New("--token: required for a cluster of several servers (they share it: it seals the cluster CA and encrypts gossip)")
	}
	return nil
}

// clusterSecret is --token, or for a single loopback server without one
// a secret generated once and kept in DATA_DIR/cluster-secret (0600).
func (a *Agent) clusterSecret() (string, error) {
	if a.cfg.Token != "" {
		return a.cfg.Token, nil
	}
	path := filepath.Join(a.cfg.DataDir, clusterSecretFile)
	b, err := os.ReadFile(path)
	if err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s, nil
		}
		return "", fmt.Errorf("%s is empty (delete it, or pass --token)", path)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	raw := make([]byte, 32)
	rand.Read(raw)
	secret := hex.EncodeToString(raw)
	if err := atomicfile.Write(path, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keeping the generated cluster secret: %w", err)
	}
	a.logger.Info("no --token: generated a cluster secret for this single server", "file", path)
	return secret, nil
}
