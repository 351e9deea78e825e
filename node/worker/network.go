package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/netdefaults"
	"orch.dev/orch/node/dns"
	"orch.dev/orch/node/routes"
	"orch.dev/orch/node/runtime"
	"orch.dev/orch/proxy"
	"orch.dev/orch/proxy/ipvs"
	"orch.dev/orch/proxy/nft"
)

// NetworkConfig turns on the node's network services (all off in the zero
// value, for tests of the kubelet alone; orchd turns them on).
type NetworkConfig struct {
	// ProxyMode is the service proxy: "auto", "ipvs" or "nftables"; "" or
	// "off" runs none.
	ProxyMode string
	// DNS serves the cluster DNS on the pod bridge's gateway (port
	// DNSPort, default 53) and points ClusterFirst pods at it.
	DNS     bool
	DNSPort int
	Zone    string // cluster.local
	// Routes keeps routes to the other nodes' pod CIDRs through their
	// addresses (host gateway).
	Routes bool
}

// startNetwork prepares the node's pod bridge and starts the proxy, the
// DNS server and the route manager as configured. It returns the pods'
// DNS settings for the kubelet (nil: the kubelet's default).
func (w *Worker) startNetwork(ctx context.Context, podCIDR string, run func(func())) (func(*corev1.Pod) runtime.DNSConfig, error) {
	nc := w.cfg.Network
	if nc.ProxyMode == "off" {
		nc.ProxyMode = ""
	}
	if nc.ProxyMode == "" && !nc.DNS && !nc.Routes {
		return nil, nil
	}
	prefix, err := netip.ParsePrefix(podCIDR)
	if err != nil {
		return nil, fmt.Errorf("pod CIDR %q: %w", podCIDR, err)
	}
	prefix = prefix.Masked()
	gateway := prefix.Addr().Next()
	log := w.log.With("component", "network")
	// Forwarding between the bridge and the node's other interfaces, and
	// bridged traffic through netfilter (the proxy's DNAT of pod-to-pod
	// service traffic on one bridge must be undone on the way back).
	for _, sc := range []struct{ path, value string }{
		{"/proc/sys/net/ipv4/ip_forward", "1"},
		{"/proc/sys/net/bridge/bridge-nf-call-iptables", "1"},
	} {
		if err := os.WriteFile(sc.path, []byte(sc.value), 0o644); err != nil {
			log.Warn("cannot set a sysctl the pod network needs", "path", sc.path, "err", err)
		}
	}
	bridge := w.cfg.RuntimeConfig.Network.Bridge
	if bridge == "" {
		bridge = "orch0"
	}
	if err := ensureBridge(bridge, netip.PrefixFrom(gateway, prefix.Bits())); err != nil {
		return nil, err
	}
	apiClient := func() (*client.Client, bool) {
		select {
		case <-w.servers.ready:
			return w.servers.client(), true
		case <-ctx.Done():
			return nil, false
		}
	}
	if nc.ProxyMode != "" {
		if err := w.startProxy(ctx, nc.ProxyMode, prefix, apiClient, run); err != nil {
			return nil, err
		}
	}
	if nc.Routes {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("routes: %w", err)
		}
		m := routes.New(h, w.cfg.Name, log.With("component", "routes"))
		run(func() { defer h.Close(); m.Run(ctx, 30*time.Second) })
		run(func() {
			if cl, ok := apiClient(); ok {
				routes.Watch(ctx, cl, m, log)
			}
		})
	}
	if !nc.DNS {
		return nil, nil
	}
	port := nc.DNSPort
	if port == 0 {
		port = 53
	}
	srv, err := dns.New(dns.Config{Addr: net.JoinHostPort(gateway.String(), fmt.Sprint(port)), Zone: nc.Zone,
		ReverseCIDRs: []netip.Prefix{netdefaults.ServiceCIDR, netdefaults.PodCIDR}, Log: log.With("component", "dns")})
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(); err != nil {
		return nil, fmt.Errorf("cluster DNS on %s: %w", gateway, err)
	}
	run(func() { srv.Serve(ctx) })
	run(func() {
		if cl, ok := apiClient(); ok {
			dns.Watch(ctx, cl, srv.Store, log)
		}
	})
	host, err := dns.ReadResolvConf("/etc/resolv.conf")
	if err != nil {
		log.Warn("reading the node's resolv.conf", "err", err)
	}
	node := dns.NodeDNS{ClusterDNS: gateway.String(), Zone: nc.Zone, Host: host}
	return func(pod *corev1.Pod) runtime.DNSConfig { return runtime.DNSConfig(dns.PodResolvConfig(pod, node)) }, nil
}

func (w *Worker) startProxy(ctx context.Context, mode string, podCIDR netip.Prefix, apiClient func() (*client.Client, bool), run func(func())) error {
	m, err := proxy.ParseMode(mode)
	if err == nil {
		m, err = proxy.SelectMode(m, ipvs.Available)
	}
	if err != nil {
		return fmt.Errorf("--proxy-mode: %w", err)
	}
	nftBackend := nft.New(nft.Config{ClusterCIDR: netdefaults.PodCIDR})
	var b proxy.Backend = nftBackend
	if m == proxy.ModeIPVS {
		b = ipvs.New(ipvs.Config{ClusterCIDR: netdefaults.PodCIDR})
		// A node switched from nftables keeps no stale rules.
		if err := nftBackend.Cleanup(ctx); err != nil {
			w.log.Warn("removing the nftables proxy's rules", "err", err)
		}
	} else if ipvs.Available() {
		if err := ipvs.New(ipvs.Config{}).Cleanup(ctx); err != nil {
			w.log.Warn("removing the IPVS proxy's rules", "err", err)
		}
	}
	log := w.log.With("component", "proxy", "mode", string(m))
	p := proxy.New(proxy.Config{Backend: b, Log: log})
	run(func() {
		if err := p.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			log.Error("service proxy stopped", "err", err)
		}
	})
	run(func() {
		if cl, ok := apiClient(); ok {
			proxy.Watch(ctx, cl, p, log)
		}
	})
	log.Info("service proxy started", "podCIDR", podCIDR.String())
	return nil
}

// ensureBridge creates the pod bridge with the gateway address if it is
// missing (the CNI bridge plugin would create it with the first pod, but
// the DNS server must listen on the gateway before that).
func ensureBridge(name string, gw netip.Prefix) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if !errors.As(err, &notFound) {
			return fmt.Errorf("pod bridge %s: %w", name, err)
		}
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("creating pod bridge %s: %w", name, err)
		}
		if link, err = netlink.LinkByName(name); err != nil {
			return fmt.Errorf("pod bridge %s: %w", name, err)
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: gw.Addr().AsSlice(), Mask: net.CIDRMask(gw.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("pod bridge %s address %s: %w", name, gw, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("pod bridge %s up: %w", name, err)
	}
	return nil
}
