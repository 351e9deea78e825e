package dns

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// buildService computes the names a Service answers, following the
// Kubernetes DNS specification: a ClusterIP Service answers with its
// ClusterIP and its SRV records point at the Service name; a headless one
// answers with its ready endpoint addresses (and the not-ready ones when it
// publishes them), each endpoint also gets a name of its own (its hostname,
// or its IP with dashes), and its SRV records point at those names.
// IPv6 addresses are left out: the cluster is IPv4 only.
func buildService(zone string, svc *corev1.Service, eps *corev1.Endpoints) *service {
	fqdn := strings.ToLower(svc.Name + "." + svc.Namespace + ".svc." + zone)
	e := &service{fqdn: fqdn}
	if !isHeadless(svc) {
		for _, ip := range clusterIPs(svc) {
			e.ips = append(e.ips, ip)
			e.ptrs = append(e.ptrs, ptrRecord{ip, fqdn})
		}
		for _, p := range svc.Spec.Ports {
			e.addSRV(p.Name, p.Protocol, p.Port, "")
		}
		return e
	}
	if eps == nil {
		return e
	}
	e.hosts = map[string][]netip.Addr{}
	for _, sub := range eps.Subsets {
		addrs := sub.Addresses
		if svc.Spec.PublishNotReadyAddresses {
			addrs = append(slices.Clip(addrs), sub.NotReadyAddresses...)
		}
		for _, a := range addrs {
			ip, ok := parseIPv4(a.IP)
			if !ok {
				continue
			}
			label := dashed(ip)
			if h := strings.ToLower(a.Hostname); isLabel(h) {
				label = h
			}
			if !slices.Contains(e.ips, ip) {
				e.ips = append(e.ips, ip)
			}
			if !slices.Contains(e.hosts[label], ip) {
				e.hosts[label] = append(e.hosts[label], ip)
				e.ptrs = append(e.ptrs, ptrRecord{ip, label + "." + fqdn})
			}
			for _, p := range sub.Ports {
				e.addSRV(p.Name, p.Protocol, p.Port, label)
			}
		}
	}
	return e
}

// addSRV adds the SRV target for one named port (unnamed ports have none).
func (e *service) addSRV(name string, proto corev1.Protocol, port int32, label string) {
	name = strings.ToLower(name)
	if !isLabel(name) || port <= 0 || port > 65535 {
		return
	}
	p := "_" + strings.ToLower(string(proto))
	if proto == "" {
		p = "_tcp"
	}
	if e.srv == nil {
		e.srv, e.protos = map[string][]srvTarget{}, map[string]bool{}
	}
	k := "_" + name + "." + p
	t := srvTarget{label, uint16(port)}
	if !slices.Contains(e.srv[k], t) {
		e.srv[k] = append(e.srv[k], t)
	}
	e.protos[p] = true
}

// clusterIPs are the Service's IPv4 cluster IPs.
func clusterIPs(svc *corev1.Service) []netip.Addr {
	all := svc.Spec.ClusterIPs
	if len(all) == 0 && svc.Spec.ClusterIP != "" {
		all = []string{svc.Spec.ClusterIP}
	}
	var out []netip.Addr
	for _, s := range all {
		if ip, ok := parseIPv4(s); ok && !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out
}

func parseIPv4(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	ip = ip.Unmap()
	return ip, ip.Is4()
}

// dashed is the label kube-dns gives an address: 10.244.1.5 -> 10-244-1-5.
func dashed(ip netip.Addr) string { return strings.ReplaceAll(ip.String(), ".", "-") }

// undashed parses a dashed label back into an address.
func undashed(label string) (netip.Addr, bool) {
	var b [4]byte
	for i := range 4 {
		part := label
		if i < 3 {
			j := strings.IndexByte(label, '-')
			if j < 0 {
				return netip.Addr{}, false
			}
			part, label = label[:j], label[j+1:]
		}
		n, ok := octet(part)
		if !ok {
			return netip.Addr{}, false
		}
		b[i] = n
	}
	return netip.AddrFrom4(b), true
}

// reverseIPv4 parses d.c.b.a.in-addr.arpa. (canonical) into a.b.c.d.
func reverseIPv4(name string) (netip.Addr, bool) {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa.")
	if !ok {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i := 3; i >= 0; i-- {
		part := rest
		if i > 0 {
			j := strings.IndexByte(rest, '.')
			if j < 0 {
				return netip.Addr{}, false
			}
			part, rest = rest[:j], rest[j+1:]
		}
		n, ok := octet(part)
		if !ok {
			return netip.Addr{}, false
		}
		b[i] = n
	}
	return netip.AddrFrom4(b), true
}

// reverseZone is the in-addr.arpa zone that holds prefix's addresses, cut
// to whole octets.
func reverseZone(p netip.Prefix) string {
	b := p.Masked().Addr().As4()
	z := "in-addr.arpa."
	for i := range p.Bits() / 8 {
		z = strconv.Itoa(int(b[i])) + "." + z
	}
	return z
}

func octet(s string) (byte, bool) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 255 {
		return 0, false
	}
	return byte(n), true
}

// isLabel reports whether s is a lowercase RFC 1123 label.
func isLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}
