package proxy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func svc(name, ip string, mut func(*corev1.Service), ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: ip, Ports: ports}}
	if mut != nil {
		mut(s)
	}
	return s
}

func port(name string, proto corev1.Protocol, p int32, target intstr.IntOrString, nodePort int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: p, TargetPort: target, NodePort: nodePort}
}

func eps(name string, subsets ...corev1.EndpointSubset) *corev1.Endpoints {
	return &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Subsets: subsets}
}

func subset(ready, notReady []string, ports ...corev1.EndpointPort) corev1.EndpointSubset {
	ss := corev1.EndpointSubset{Ports: ports}
	for _, ip := range ready {
		ss.Addresses = append(ss.Addresses, corev1.EndpointAddress{IP: ip})
	}
	for _, ip := range notReady {
		ss.NotReadyAddresses = append(ss.NotReadyAddresses, corev1.EndpointAddress{IP: ip})
	}
	return ss
}

func eport(name string, proto corev1.Protocol, p int32) corev1.EndpointPort {
	return corev1.EndpointPort{Name: name, Protocol: proto, Port: p}
}

// want renders a rule set compactly: one "key -> endpoints" line per
// virtual server, as RuleSet.String.
func TestCompute(t *testing.T) {
	http := port("http", corev1.ProtocolTCP, 80, intstr.FromString("web"), 0)
	dns := port("dns", corev1.ProtocolUDP, 53, intstr.FromInt32(5353), 0)
	secs := int32(30)
	affinity := func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &secs}}
	}
	nodePort := func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }
	tests := []struct {
		name     string
		svcs     []*corev1.Service
		eps      []*corev1.Endpoints
		want     string
		problems []error
	}{
		{
			name: "ready endpoints, named target port resolved through the endpoints port name",
			svcs: []*corev1.Service{svc("web", "10.96.0.10", nil, http)},
			eps:  []*corev1.Endpoints{eps("web", subset([]string{"10.244.1.6", "10.244.1.5"}, nil, eport("http", corev1.ProtocolTCP, 8080)))},
			want: "10.96.0.10/tcp/80 -> 10.244.1.5:8080 10.244.1.6:8080\n",
		},
		{
			name: "not-ready addresses get nothing",
			svcs: []*corev1.Service{svc("web", "10.96.0.10", nil, http)},
			eps:  []*corev1.Endpoints{eps("web", subset([]string{"10.244.1.5"}, []string{"10.244.1.7"}, eport("http", "", 8080)))},
			want: "10.96.0.10/tcp/80 -> 10.244.1.5:8080\n",
		},
		{
			name: "per-subset target ports (pods of two versions), duplicates merged",
			svcs: []*corev1.Service{svc("web", "10.96.0.10", nil, http)},
			eps: []*corev1.Endpoints{eps("web",
				subset([]string{"10.244.1.5"}, nil, eport("http", corev1.ProtocolTCP, 8080)),
				subset([]string{"10.244.1.6", "10.244.1.5"}, nil, eport("http", corev1.ProtocolTCP, 9090)),
				subset([]string{"10.244.1.5"}, nil, eport("http", corev1.ProtocolTCP, 8080)))},
			want: "10.96.0.10/tcp/80 -> 10.244.1.5:8080 10.244.1.5:9090 10.244.1.6:9090\n",
		},
		{
			name: "two ports, TCP and UDP, matched by name and protocol",
			svcs: []*corev1.Service{svc("dns", "10.96.0.53", nil, http, dns)},
			eps: []*corev1.Endpoints{eps("dns", subset([]string{"10.244.2.2"}, nil,
				eport("dns", corev1.ProtocolTCP, 1), eport("dns", corev1.ProtocolUDP, 5353), eport("http", corev1.ProtocolTCP, 8080)))},
			want: "10.96.0.53/tcp/80 -> 10.244.2.2:8080\n10.96.0.53/udp/53 -> 10.244.2.2:5353\n",
		},
		{
			name: "no endpoints object: a virtual server without endpoints (rejects)",
			svcs: []*corev1.Service{svc("web", "10.96.0.10", nil, http)},
			want: "10.96.0.10/tcp/80 ->\n",
		},
		{
			name: "headless and unallocated ClusterIP services are ignored",
			svcs: []*corev1.Service{svc("headless", "None", nil, http), svc("pending", "", nil, http)},
			eps:  []*corev1.Endpoints{eps("headless", subset([]string{"10.244.1.5"}, nil, eport("http", "", 80)))},
			want: "",
		},
		{
			name: "NodePort: a second virtual server on the node port",
			svcs: []*corev1.Service{svc("web", "10.96.0.10", nodePort, port("", "", 80, intstr.FromInt32(8080), 30080))},
			eps:  []*corev1.Endpoints{eps("web", subset([]string{"10.244.1.5"}, nil, eport("", "", 8080)))},
			want: "10.96.0.10/tcp/80 -> 10.244.1.5:8080\nnodeport/tcp/30080 -> 10.244.1.5:8080\n",
		},
		{
			name: "ClientIP affinity with its timeout, on both virtual servers",
			svcs: []*corev1.Service{svc("web", "10.96.0.10", func(s *corev1.Service) { affinity(s); nodePort(s) },
				port("", "", 80, intstr.FromInt32(8080), 30080))},
			want: "10.96.0.10/tcp/80 affinity=30s ->\nnodeport/tcp/30080 affinity=30s ->\n",
		},
		{
			name: "ClientIP affinity defaults to 3h",
			svcs: []*corev1.Service{svc("web", "10.96.0.10", func(s *corev1.Service) {
				s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			}, http)},
			want: "10.96.0.10/tcp/80 affinity=3h0m0s ->\n",
		},
		{
			name:     "a bad ClusterIP drops the whole service; IPv6 is not supported",
			svcs:     []*corev1.Service{svc("bad", "10.96.0.300", nil, http), svc("six", "fd00::10", nil, http)},
			want:     "",
			problems: []error{ErrInvalidService, ErrUnsupported},
		},
		{
			name:     "SCTP port left out, the others kept",
			svcs:     []*corev1.Service{svc("web", "10.96.0.10", nil, http, port("s", corev1.ProtocolSCTP, 9, intstr.FromInt32(9), 0))},
			want:     "10.96.0.10/tcp/80 ->\n",
			problems: []error{ErrUnsupported},
		},
		{
			name: "two services on one NodePort: the first by namespace/name wins",
			svcs: []*corev1.Service{
				svc("b", "10.96.0.11", nodePort, port("", "", 80, intstr.FromInt32(80), 30080)),
				svc("a", "10.96.0.10", nodePort, port("", "", 80, intstr.FromInt32(80), 30080)),
			},
			want:     "10.96.0.10/tcp/80 ->\n10.96.0.11/tcp/80 ->\nnodeport/tcp/30080 ->\n",
			problems: []error{ErrConflict},
		},
		{
			name: "IPv6 endpoint addresses and ports of other names are skipped",
			svcs: []*corev1.Service{svc("web", "10.96.0.10", nil, http)},
			eps: []*corev1.Endpoints{eps("web", subset([]string{"fd00::5", "10.244.1.5"}, nil,
				eport("http", "", 8080), eport("metrics", "", 9100)))},
			want: "10.96.0.10/tcp/80 -> 10.244.1.5:8080\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, problems := Compute(tc.svcs, tc.eps)
			if got := rs.String(); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if len(problems) != len(tc.problems) {
				t.Fatalf("problems %v, want %v", problems, tc.problems)
			}
			for i, p := range problems {
				if !errors.Is(p, tc.problems[i]) {
					t.Errorf("problem %d: %v, want %v", i, p, tc.problems[i])
				}
			}
		})
	}
}

func TestComputeNodePortCarriesName(t *testing.T) {
	rs, _ := Compute([]*corev1.Service{svc("web", "10.96.0.10", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort },
		port("http", "", 80, intstr.FromInt32(80), 30080))}, nil)
	v := rs[Key{Proto: TCP, Port: 30080}]
	if v == nil || !strings.Contains(v.Name, "ns/web:http") {
		t.Fatalf("nodeport virtual server %v", v)
	}
}

// parseVS reads "10.96.0.10:80 a=30s 10.244.1.5:8080 ~10.244.1.6:8080"
// (~ marks weight 0), for the diff tests.
func parseVS(t testing.TB, s string) *VirtualServer {
	f := strings.Fields(s)
	ap := netip.MustParseAddrPort(f[0])
	v := &VirtualServer{Key: Key{Addr: ap.Addr(), Proto: TCP, Port: ap.Port()}}
	for _, e := range f[1:] {
		if d, ok := strings.CutPrefix(e, "a="); ok {
			var err error
			if v.Affinity, err = time.ParseDuration(d); err != nil {
				t.Fatal(err)
			}
			continue
		}
		w := 1
		if r, ok := strings.CutPrefix(e, "~"); ok {
			w, e = 0, r
		}
		v.Endpoints = append(v.Endpoints, Endpoint{Addr: netip.MustParseAddrPort(e), Weight: w})
	}
	v.Endpoints = SortEndpoints(v.Endpoints)
	return v
}

func ruleSet(t testing.TB, vss ...string) RuleSet {
	rs := RuleSet{}
	for _, s := range vss {
		v := parseVS(t, s)
		rs[v.Key] = v
	}
	return rs
}
