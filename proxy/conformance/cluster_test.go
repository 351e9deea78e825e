package conformance

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/internal/testnet"
	"orch.dev/orch/proxy"
)

// The test network. Everything is inside namespaces the test creates:
//
//	p1 p2 p3 client --(veth)-- cbr0 10.244.7.1/24 [node] ext0 192.168.77.1/24 --(veth)-- ext 192.168.77.2
//
// The node's default route points at ext (the "site router"), which routes nowhere.
//
// The proxy programs the node namespace. Pods answer on 8080 (TCP and UDP)
// with their name and the client address they saw.
const (
	clusterCIDR = "10.244.0.0/16"
	nodeBridge  = "10.244.7.1"
	clientIP    = "10.244.7.100"
	nodeExtIP   = "192.168.77.1"
	extIP       = "192.168.77.2"
	vip         = "10.96.7.10"
	vip2        = "10.96.7.20"
	nodePort    = 30080
	podPort     = 8080
)

func podIP(i int) string { return fmt.Sprintf("10.244.7.%d", 10+i) }

// backendKind is what the suite needs from a backend.
type backendKind struct {
	name string
	// new returns a fresh backend instance programming the node namespace
	// (a restart makes a second one).
	new func(t *testing.T, c *cluster) proxy.Backend
	// leftovers lists kernel objects beyond the backend's fixed ones.
	leftovers func(t *testing.T, c *cluster) []string
	// exactSplit: the scheduler is round robin, so n connections over k
	// endpoints split exactly (IPVS); numgen random only splits roughly.
	exactSplit bool
}

type cluster struct {
	kind   backendKind
	node   *testnet.NS
	client *testnet.NS
	ext    *testnet.NS
	pods   []*testnet.NS
	clock  *fakeClock
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func newCluster(t *testing.T, kind backendKind) *cluster {
	c := &cluster{kind: kind, clock: &fakeClock{now: time.Unix(1_000_000, 0)}}
	c.node = testnet.New(t, "node", 0)
	c.node.Sysctl(t, "net.ipv4.ip_forward", "1")
	// Bridged replies (pod to pod on one bridge after DNAT) must pass
	// netfilter to be un-NATed, as on a real node with the CNI bridge.
	_ = c.node.Do(func() error { return writeIfExists("/proc/sys/net/bridge/bridge-nf-call-iptables", "1") })
	testnet.Bridge(t, c.node, "cbr0", nodeBridge+"/24")
	for i := 1; i <= 3; i++ {
		p := testnet.New(t, fmt.Sprintf("p%d", i), podPort)
		testnet.Attach(t, c.node, fmt.Sprintf("veth-p%d", i), "cbr0", "", p, podIP(i)+"/24", nodeBridge)
		c.pods = append(c.pods, p)
	}
	c.client = testnet.New(t, "client", 0)
	testnet.Attach(t, c.node, "veth-client", "cbr0", "", c.client, clientIP+"/24", nodeBridge)
	c.ext = testnet.New(t, "ext", 0)
	testnet.Attach(t, c.node, "ext0", "", nodeExtIP+"/24", c.ext, extIP+"/24", nodeExtIP)
	// Like a real node, the node has a default route (to ext, standing in
	// for the site router): locally originated VIP traffic needs a route
	// before the output hook can DNAT it.
	testnet.DefaultRoute(t, c.node, extIP)
	// The pods answer directly before any proxying.
	for i, p := range c.pods {
		if r, err := c.client.Dial("tcp", fmt.Sprintf("%s:%d", podIP(i+1), podPort), 2*time.Second); err != nil || r.Name != p.Name {
			t.Fatalf("pod %s not reachable directly: %v %v", p.Name, r, err)
		}
	}
	return c
}

// alive checks that the client still reaches a pod directly, so that a
// failed connection to a service means the service refused it.
func (c *cluster) alive(t *testing.T) {
	t.Helper()
	if r, err := c.client.Dial("tcp", fmt.Sprintf("%s:%d", podIP(1), podPort), 2*time.Second); err != nil || r.Name != "p1" {
		t.Fatalf("the client no longer reaches p1 directly: %v %v", r, err)
	}
}

// proxier returns a Proxier on a fresh backend instance, with a fake clock
// for draining.
func (c *cluster) proxier(t *testing.T) (*proxy.Proxier, proxy.Backend) {
	b := c.kind.new(t, c)
	p := proxy.New(proxy.Config{Backend: b, MinSyncInterval: 5 * time.Millisecond,
		DrainTimeout: 10 * time.Second, Now: c.clock.Now})
	return p, b
}

// start gives a new Proxier the full state and syncs once.
func (c *cluster) start(t *testing.T, svcs []*corev1.Service, eps []*corev1.Endpoints) (*proxy.Proxier, proxy.Backend) {
	t.Helper()
	p, b := c.proxier(t)
	p.ReplaceServices(svcs)
	p.ReplaceEndpoints(eps)
	syncNow(t, p)
	return p, b
}

func syncNow(t *testing.T, p *proxy.Proxier) {
	t.Helper()
	if err := p.Sync(context.Background(), false); err != nil {
		t.Fatal(err)
	}
}

// hits makes n connections (TCP) or exchanges (UDP) and counts who answered;
// peers collects the client addresses the endpoints saw.
func hits(t *testing.T, from *testnet.NS, network, addr string, n int) (map[string]int, map[string]bool) {
	t.Helper()
	counts, peers := map[string]int{}, map[string]bool{}
	for i := 0; i < n; i++ {
		r, err := from.Dial(network, addr, 3*time.Second)
		if err != nil {
			t.Fatalf("%s %s from %s, attempt %d: %v", network, addr, from.Name, i, err)
		}
		counts[r.Name]++
		peers[r.Peer] = true
	}
	return counts, peers
}

// service is web: ports http (80/TCP -> named target port "http") and dns
// (53/UDP -> 8080), NodePort 30080 for http.
func service(name, ip string, affinity bool) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: ip, Ports: []corev1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http"), NodePort: nodePort},
			{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(podPort)},
		}}}
	if affinity {
		secs := int32(60)
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &secs}}
	}
	return s
}

// endpoints lists ready and not-ready pods (by number) for service name.
func endpoints(name string, ready, notReady []int) *corev1.Endpoints {
	ss := corev1.EndpointSubset{Ports: []corev1.EndpointPort{
		{Name: "http", Port: podPort, Protocol: corev1.ProtocolTCP},
		{Name: "dns", Port: podPort, Protocol: corev1.ProtocolUDP},
	}}
	for _, i := range ready {
		ss.Addresses = append(ss.Addresses, corev1.EndpointAddress{IP: podIP(i)})
	}
	for _, i := range notReady {
		ss.NotReadyAddresses = append(ss.NotReadyAddresses, corev1.EndpointAddress{IP: podIP(i)})
	}
	e := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	if len(ss.Addresses)+len(ss.NotReadyAddresses) > 0 {
		e.Subsets = []corev1.EndpointSubset{ss}
	}
	return e
}
