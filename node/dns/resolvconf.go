package dns

import (
	"bufio"
	"io"
	"os"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Limits of a resolv.conf that the kubelet enforces (glibc reads at most
// three nameservers; the search list limits are Kubernetes').
const (
	MaxNameservers    = 3
	MaxSearches       = 32
	MaxSearchListChar = 2048
)

// ResolvConfig is the content of a resolv.conf. Its fields are those of
// node/runtime's DNSConfig, so the kubelet converts it with
// runtime.DNSConfig(rc).
type ResolvConfig struct {
	Nameservers []string
	Searches    []string
	Options     []string // "ndots:5", "rotate"
}

// String is the resolv.conf file.
func (c ResolvConfig) String() string {
	var b strings.Builder
	for _, ns := range c.Nameservers {
		b.WriteString("nameserver " + ns + "\n")
	}
	if len(c.Searches) > 0 {
		b.WriteString("search " + strings.Join(c.Searches, " ") + "\n")
	}
	if len(c.Options) > 0 {
		b.WriteString("options " + strings.Join(c.Options, " ") + "\n")
	}
	return b.String()
}

// ReadResolvConf reads a resolv.conf file; a missing file is an empty
// configuration (as for the resolver, which then asks the local host).
func ReadResolvConf(path string) (ResolvConfig, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return ResolvConfig{}, nil
	}
	if err != nil {
		return ResolvConfig{}, err
	}
	defer f.Close()
	return ParseResolvConf(f)
}

// ParseResolvConf parses resolv.conf text as the resolver does: every
// nameserver line adds a server, the last search line sets the search list
// (trailing dots dropped), options lines add options (a later one of the
// same name wins); comments start with # or ;.
func ParseResolvConf(r io.Reader) (ResolvConfig, error) {
	var c ResolvConfig
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "nameserver":
			c.Nameservers = append(c.Nameservers, f[1])
		case "search":
			c.Searches = nil
			for _, s := range f[1:] {
				if s = strings.TrimSuffix(s, "."); s != "" {
					c.Searches = append(c.Searches, s)
				}
			}
		case "options":
			c.Options = mergeOptions(c.Options, f[1:])
		}
	}
	return c, sc.Err()
}

// NodeDNS is what a node knows about DNS for its pods.
type NodeDNS struct {
	// ClusterDNS is the address pods reach the cluster DNS at (the
	// Server's address on the pod bridge). Empty: ClusterFirst pods get the
	// node's resolvers, as the kubelet does without --cluster-dns.
	ClusterDNS string
	// Zone is the cluster domain: cluster.local.
	Zone string
	// Host is the node's own resolv.conf (ReadResolvConf).
	Host ResolvConfig
}

// PodResolvConfig is what pod's resolv.conf says, computed as the kubelet
// does from spec.dnsPolicy and spec.dnsConfig:
//   - ClusterFirst (the default) and ClusterFirstWithHostNet: the cluster
//     DNS, the search list <ns>.svc.<zone> svc.<zone> <zone> followed by the
//     node's, and ndots:5. A ClusterFirst pod on the host network gets
//     Default instead, as do all pods when there is no cluster DNS.
//   - Default: the node's resolv.conf.
//   - None: nothing but spec.dnsConfig.
//
// spec.dnsConfig is then merged in: its nameservers and searches are
// appended (duplicates dropped), its options override those of the same
// name. The result is cut to the resolver's limits: three nameservers, 32
// search domains or 2048 characters of search list.
func PodResolvConfig(pod *corev1.Pod, node NodeDNS) ResolvConfig {
	zone := strings.TrimSuffix(canonicalZone(node.Zone), ".")
	var c ResolvConfig
	switch policy(pod, node) {
	case corev1.DNSNone:
	case corev1.DNSClusterFirst:
		c.Nameservers = []string{node.ClusterDNS}
		c.Searches = append([]string{pod.Namespace + ".svc." + zone, "svc." + zone, zone}, node.Host.Searches...)
		c.Options = []string{"ndots:5"}
	default:
		c.Nameservers = slices.Clone(node.Host.Nameservers)
		c.Searches = slices.Clone(node.Host.Searches)
		c.Options = slices.Clone(node.Host.Options)
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		c.Nameservers = append(c.Nameservers, dc.Nameservers...)
		c.Searches = append(c.Searches, dc.Searches...)
		opts := make([]string, 0, len(dc.Options))
		for _, o := range dc.Options {
			if o.Value != nil {
				opts = append(opts, o.Name+":"+*o.Value)
			} else {
				opts = append(opts, o.Name)
			}
		}
		c.Options = mergeOptions(c.Options, opts)
	}
	c.Nameservers = dedup(c.Nameservers)
	if len(c.Nameservers) > MaxNameservers {
		c.Nameservers = c.Nameservers[:MaxNameservers]
	}
	c.Searches = fitSearches(dedup(c.Searches))
	return c
}

// ResolvConf is the text of pod's /etc/resolv.conf (see PodResolvConfig).
func ResolvConf(pod *corev1.Pod, node NodeDNS) string { return PodResolvConfig(pod, node).String() }

// policy is the pod's dnsPolicy reduced to None, ClusterFirst or Default.
func policy(pod *corev1.Pod, node NodeDNS) corev1.DNSPolicy {
	switch pod.Spec.DNSPolicy {
	case corev1.DNSNone:
		return corev1.DNSNone
	case corev1.DNSDefault:
		return corev1.DNSDefault
	case corev1.DNSClusterFirstWithHostNet:
	case corev1.DNSClusterFirst, "":
		if pod.Spec.HostNetwork {
			return corev1.DNSDefault
		}
	}
	if node.ClusterDNS == "" {
		return corev1.DNSDefault
	}
	return corev1.DNSClusterFirst
}

// mergeOptions adds options to base: one whose name is already there
// replaces it in place, others are appended.
func mergeOptions(base, add []string) []string {
	out := slices.Clone(base)
	for _, o := range add {
		name, _, _ := strings.Cut(o, ":")
		i := slices.IndexFunc(out, func(x string) bool { n, _, _ := strings.Cut(x, ":"); return n == name })
		if i >= 0 {
			out[i] = o
		} else {
			out = append(out, o)
		}
	}
	return out
}

func dedup(list []string) []string {
	var out []string
	for _, s := range list {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// fitSearches keeps the leading search domains that fit the limits.
func fitSearches(list []string) []string {
	n := 0
	for i, s := range list {
		if i >= MaxSearches || n+len(s)+min(i, 1) > MaxSearchListChar {
			return list[:i]
		}
		n += len(s) + min(i, 1)
	}
	return list
}
