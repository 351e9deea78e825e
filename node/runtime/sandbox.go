package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A sandbox is a directory under StateDir/sandboxes/<id> holding its record
// (sandbox.json) and the hostname, hosts and resolv.conf files mounted into
// its containers; its network namespace is bind-mounted at
// StateDir/netns/<id>.

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r == '-') {
			return false
		}
	}
	return true
}

func (c *Containerd) sandboxDir(id string) string {
	return filepath.Join(c.cfg.StateDir, "sandboxes", id)
}

func (c *Containerd) netnsPath(id string) string { return filepath.Join(c.cfg.StateDir, "netns", id) }

// CreateSandbox implements Runtime.
func (c *Containerd) CreateSandbox(ctx context.Context, cfg SandboxConfig) (_ Sandbox, err error) {
	if c.net == nil {
		return Sandbox{}, ErrNoPodNetwork
	}
	if cfg.Hostname == "" {
		cfg.Hostname = cfg.Name
	}
	if len(cfg.Hostname) > 63 {
		cfg.Hostname = cfg.Hostname[:63]
	}
	sb := Sandbox{ID: newID(), Config: cfg, CreatedAt: time.Now().UTC()}
	sb.NetNS = c.netnsPath(sb.ID)
	dir := c.sandboxDir(sb.ID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Sandbox{}, err
	}
	defer func() {
		if err != nil {
			// Undo with a fresh context: ctx may be what failed.
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			c.net.detach(cctx, sb.ID, sb.NetNS, cfg)
			removeNetNS(sb.NetNS)
			os.RemoveAll(dir)
		}
	}()
	if err := newNetNS(sb.NetNS); err != nil {
		return Sandbox{}, err
	}
	if err := c.netGate.enter(ctx); err != nil {
		return Sandbox{}, err
	}
	sb.IP, err = c.net.attach(ctx, sb.ID, sb.NetNS, cfg)
	c.netGate.leave()
	if err != nil {
		return Sandbox{}, err
	}
	resolv, err := resolvConf(cfg.DNS)
	if err != nil {
		return Sandbox{}, err
	}
	files := map[string]string{
		"hostname":    cfg.Hostname + "\n",
		"hosts":       fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n%s\t%s\n", sb.IP, cfg.Hostname),
		"resolv.conf": resolv,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return Sandbox{}, err
		}
	}
	rec, err := json.Marshal(sb)
	if err != nil {
		return Sandbox{}, err
	}
	// The record is written last and atomically: a sandbox is listed only
	// once it is complete.
	tmp := filepath.Join(dir, "sandbox.json.tmp")
	if err := os.WriteFile(tmp, rec, 0o644); err != nil {
		return Sandbox{}, err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "sandbox.json")); err != nil {
		return Sandbox{}, err
	}
	return sb, nil
}

func resolvConf(dns DNSConfig) (string, error) {
	if len(dns.Nameservers) == 0 {
		b, err := os.ReadFile("/etc/resolv.conf")
		if err != nil && !os.IsNotExist(err) {
			return "", err
		}
		return string(b), nil
	}
	var b strings.Builder
	for _, ns := range dns.Nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(dns.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(dns.Searches, " "))
	}
	if len(dns.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(dns.Options, " "))
	}
	return b.String(), nil
}

func (c *Containerd) loadSandbox(id string) (Sandbox, error) {
	if !validID(id) {
		return Sandbox{}, fmt.Errorf("sandbox %q: %w", id, ErrNotFound)
	}
	b, err := os.ReadFile(filepath.Join(c.sandboxDir(id), "sandbox.json"))
	if os.IsNotExist(err) {
		return Sandbox{}, fmt.Errorf("sandbox %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Sandbox{}, err
	}
	var sb Sandbox
	if err := json.Unmarshal(b, &sb); err != nil {
		return Sandbox{}, fmt.Errorf("sandbox %s: %w", id, err)
	}
	return sb, nil
}

// RemoveSandbox implements Runtime.
func (c *Containerd) RemoveSandbox(ctx context.Context, id string) error {
	if !validID(id) {
		return nil
	}
	ctrs, err := c.client.Containers(ctx, fmt.Sprintf("labels.%q==%q", LabelSandbox, id))
	if err != nil {
		return err
	}
	if len(ctrs) > 0 {
		return fmt.Errorf("sandbox %s: %d containers: %w", id, len(ctrs), ErrSandboxInUse)
	}
	sb, err := c.loadSandbox(id)
	switch {
	case errors.Is(err, ErrNotFound):
		// Never completed, or half removed: clear what may be left.
		sb = Sandbox{ID: id, NetNS: c.netnsPath(id)}
	case err != nil:
		return err
	}
	if c.net != nil {
		if err := c.netGate.enter(ctx); err != nil {
			return err
		}
		err := c.net.detach(ctx, id, sb.NetNS, sb.Config)
		c.netGate.leave()
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", id, err)
		}
	}
	if err := removeNetNS(sb.NetNS); err != nil {
		return fmt.Errorf("sandbox %s: %w", id, err)
	}
	return os.RemoveAll(c.sandboxDir(id))
}

// ListSandboxes implements Runtime.
func (c *Containerd) ListSandboxes(ctx context.Context) ([]Sandbox, error) {
	ents, err := os.ReadDir(filepath.Join(c.cfg.StateDir, "sandboxes"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Sandbox
	for _, e := range ents {
		sb, err := c.loadSandbox(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue // being created or removed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, sb)
	}
	return out, nil
}
