package dns

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestPodResolvConfig(t *testing.T) {
	host := ResolvConfig{Nameservers: []string{"192.168.1.1", "192.168.1.2"}, Searches: []string{"corp.example"},
		Options: []string{"edns0", "timeout:2"}}
	node := NodeDNS{ClusterDNS: "10.244.1.1", Host: host}
	str := func(s string) *string { return &s }
	pod := func(policy corev1.DNSPolicy, hostNet bool, dc *corev1.PodDNSConfig) *corev1.Pod {
		p := &corev1.Pod{}
		p.Namespace = "shop"
		p.Spec.DNSPolicy, p.Spec.HostNetwork, p.Spec.DNSConfig = policy, hostNet, dc
		return p
	}
	cluster := ResolvConfig{Nameservers: []string{"10.244.1.1"},
		Searches: []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example"},
		Options:  []string{"ndots:5"}}
	many := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s%d", prefix, i))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		node NodeDNS
		want ResolvConfig
	}{
		{"ClusterFirst", pod(corev1.DNSClusterFirst, false, nil), node, cluster},
		{"unset is ClusterFirst", pod("", false, nil), node, cluster},
		{"ClusterFirst on the host network is Default", pod(corev1.DNSClusterFirst, true, nil), node, host},
		{"ClusterFirstWithHostNet", pod(corev1.DNSClusterFirstWithHostNet, true, nil), node, cluster},
		{"ClusterFirstWithHostNet off the host network", pod(corev1.DNSClusterFirstWithHostNet, false, nil), node, cluster},
		{"Default", pod(corev1.DNSDefault, false, nil), node, host},
		{"ClusterFirst without cluster DNS is Default", pod(corev1.DNSClusterFirst, false, nil), NodeDNS{Host: host}, host},
		{"another zone", pod(corev1.DNSClusterFirst, false, nil), NodeDNS{ClusterDNS: "10.244.1.1", Zone: "Edge.Example."},
			ResolvConfig{Nameservers: []string{"10.244.1.1"}, Searches: []string{"shop.svc.edge.example", "svc.edge.example", "edge.example"},
				Options: []string{"ndots:5"}}},
		{"None", pod(corev1.DNSNone, false, &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: str("2")}}}), node,
			ResolvConfig{Nameservers: []string{"1.1.1.1"}, Searches: []string{"a.example"}, Options: []string{"ndots:2"}}},
		{"None without dnsConfig", pod(corev1.DNSNone, false, nil), node, ResolvConfig{}},
		{"ClusterFirst with dnsConfig", pod(corev1.DNSClusterFirst, false, &corev1.PodDNSConfig{
			Nameservers: []string{"10.244.1.1", "9.9.9.9"}, Searches: []string{"cluster.local", "b.example"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: str("1")}, {Name: "single-request-reopen"}}}), node,
			ResolvConfig{Nameservers: []string{"10.244.1.1", "9.9.9.9"},
				Searches: []string{"shop.svc.cluster.local", "svc.cluster.local", "cluster.local", "corp.example", "b.example"},
				Options:  []string{"ndots:1", "single-request-reopen"}}},
		{"Default with dnsConfig", pod(corev1.DNSDefault, false, &corev1.PodDNSConfig{
			Options: []corev1.PodDNSConfigOption{{Name: "timeout", Value: str("5")}, {Name: "rotate"}}}), node,
			ResolvConfig{Nameservers: host.Nameservers, Searches: host.Searches, Options: []string{"edns0", "timeout:5", "rotate"}}},
		{"limits", pod(corev1.DNSClusterFirst, false, &corev1.PodDNSConfig{
			Nameservers: many("10.0.0.", 5), Searches: many("s", 40)}), node,
			ResolvConfig{Nameservers: []string{"10.244.1.1", "10.0.0.0", "10.0.0.1"},
				Searches: append(cluster.Searches, many("s", 28)...), Options: []string{"ndots:5"}}},
		{"search list length", pod(corev1.DNSNone, false, &corev1.PodDNSConfig{
			Searches: []string{strings.Repeat("a", 1000), strings.Repeat("b", 1000), strings.Repeat("c", 46), "d"}}), node,
			ResolvConfig{Searches: []string{strings.Repeat("a", 1000), strings.Repeat("b", 1000), strings.Repeat("c", 46)}}}, // 2048 characters
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PodResolvConfig(tc.pod, tc.node)
			if !reflect.DeepEqual(norm(got), norm(tc.want)) {
				t.Fatalf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// norm makes nil and empty lists equal.
func norm(c ResolvConfig) ResolvConfig {
	for _, l := range []*[]string{&c.Nameservers, &c.Searches, &c.Options} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	return c
}

// TestResolvConfText: the file the kubelet writes into the pod.
func TestResolvConfText(t *testing.T) {
	p := &corev1.Pod{}
	p.Namespace = "default"
	got := ResolvConf(p, NodeDNS{ClusterDNS: "10.244.1.1", Host: ResolvConfig{Searches: []string{"lan"}}})
	want := "nameserver 10.244.1.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local lan\noptions ndots:5\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestParseResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	text := `# written by dhclient
domain lan
search old.example
search corp.example. lan .
nameserver 192.168.1.1
nameserver 192.168.1.2 # secondary
; a comment
nameserver
options ndots:2 edns0
options ndots:3 rotate
`
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResolvConf(path)
	if err != nil {
		t.Fatal(err)
	}
	want := ResolvConfig{Nameservers: []string{"192.168.1.1", "192.168.1.2"}, Searches: []string{"corp.example", "lan"},
		Options: []string{"ndots:3", "edns0", "rotate"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if got, err := ReadResolvConf(filepath.Join(t.TempDir(), "missing")); err != nil || !reflect.DeepEqual(norm(got), ResolvConfig{}) {
		t.Fatalf("missing file: %+v, %v", got, err)
	}
}
