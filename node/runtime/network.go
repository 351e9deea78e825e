package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"golang.org/x/sys/unix"
)

// NetworkConfig describes the node's pod network: one Linux bridge, pods
// get addresses from PodCIDR (host-local IPAM), the bridge holds the
// gateway address (the first of PodCIDR), and every pod's default route
// goes through it.
type NetworkConfig struct {
	Name       string   // CNI network name: "orch"
	Bridge     string   // bridge interface: "orch0" (at most 15 characters)
	PodCIDR    string   // e.g. 10.244.1.0/24; empty: CreateSandbox fails with ErrNoPodNetwork
	PluginDirs []string // CNI plugin binaries: /usr/lib/cni, /opt/cni/bin
	MTU        int      // 0: the plugin's default
	IPMasq     bool     // masquerade pod traffic leaving PodCIDR (one nftables rule, masquerade.go)
}

func (n *NetworkConfig) defaults() {
	if n.Name == "" {
		n.Name = "orch"
	}
	if n.Bridge == "" {
		n.Bridge = "orch0"
	}
	if len(n.PluginDirs) == 0 {
		n.PluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}
	}
}

// podNetwork attaches network namespaces to the pod network through the
// CNI bridge, host-local and loopback plugins. All its state (IPAM
// allocations, CNI result cache) lives under its directory.
type podNetwork struct {
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

func newPodNetwork(cfg NetworkConfig, dir string) (*podNetwork, error) {
	cidr, err := netip.ParsePrefix(cfg.PodCIDR)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR: %w", err)
	}
	if len(cfg.Bridge) > 15 {
		return nil, fmt.Errorf("bridge name %q is longer than 15 characters", cfg.Bridge)
	}
	if cfg.IPMasq {
		if err := ensureMasquerade(cfg.Bridge, cidr.Masked()); err != nil {
			return nil, err
		}
	}
	bridge := map[string]any{
		"type": "bridge", "bridge": cfg.Bridge, "isGateway": true, "hairpinMode": true,
		"ipam": map[string]any{
			"type":   "host-local",
			"ranges": [][]map[string]string{{{"subnet": cfg.PodCIDR}}},
			// Without a default route a pod cannot answer clients outside
			// its subnet (service VIPs, other nodes).
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": filepath.Join(dir, "ipam"),
		},
	}
	if cfg.MTU > 0 {
		bridge["mtu"] = cfg.MTU
	}
	conf, err := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": cfg.Name,
		"plugins": []any{bridge, map[string]string{"type": "loopback"}},
	})
	if err != nil {
		return nil, err
	}
	list, err := libcni.ConfListFromBytes(conf)
	if err != nil {
		return nil, fmt.Errorf("CNI config: %w", err)
	}
	// An explicit Exec: given nil, libcni sets its default lazily in every
	// call, a data race between pods set up at once.
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	return &podNetwork{cni: libcni.NewCNIConfigWithCacheDir(cfg.PluginDirs, filepath.Join(dir, "cache"), exec), list: list}, nil
}

func (n *podNetwork) rt(id, netns string, cfg SandboxConfig) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0", Args: [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", cfg.Namespace}, {"K8S_POD_NAME", cfg.Name}, {"K8S_POD_UID", cfg.UID},
	}}
}

// attach wires the network namespace to the pod network and returns the pod IP.
func (n *podNetwork) attach(ctx context.Context, id, netns string, cfg SandboxConfig) (string, error) {
	res, err := n.cni.AddNetworkList(ctx, n.list, n.rt(id, netns, cfg))
	if err != nil {
		return "", fmt.Errorf("CNI add: %w", err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return "", fmt.Errorf("CNI result: %w", err)
	}
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			return ip.Address.IP.String(), nil
		}
	}
	if len(r.IPs) > 0 {
		return r.IPs[0].Address.IP.String(), nil
	}
	return "", errors.New("CNI add: no IP address in the result")
}

// detach releases the pod's address and deletes its veth pair. It succeeds
// when there is nothing left to release.
func (n *podNetwork) detach(ctx context.Context, id, netns string, cfg SandboxConfig) error {
	if _, err := os.Stat(netns); err != nil {
		netns = "" // gone already: plugins release what they can without it
	}
	if err := n.cni.DelNetworkList(ctx, n.list, n.rt(id, netns, cfg)); err != nil {
		return fmt.Errorf("CNI del: %w", err)
	}
	return nil
}

// newNetNS creates a network namespace kept alive by a bind mount at path.
func newNetNS(path string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	done := make(chan error, 1)
	go func() {
		// The thread moves into the new namespace and is never unlocked, so
		// Go ends it with this goroutine instead of reusing it.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("unshare: %w", err)
			return
		}
		if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
			done <- fmt.Errorf("bind mount: %w", err)
			return
		}
		done <- nil
	}()
	if err := <-done; err != nil {
		os.Remove(path)
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	return nil
}

// removeNetNS unmounts and deletes a namespace made by newNetNS. It
// succeeds when the namespace is already gone.
func removeNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
