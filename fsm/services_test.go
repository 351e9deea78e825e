package fsm

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
)

func service(ns, name string, typ corev1.ServiceType, ports ...int32) *corev1.Service {
	s := &corev1.Service{ObjectMeta: meta(ns, name), Spec: corev1.ServiceSpec{Type: typ, Selector: map[string]string{"app": name}}}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "p" + strconv.Itoa(int(p)), Port: p, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8080)})
	}
	api.Service.SetTypeMeta(s)
	return s
}

func (f *testFSM) service(ns, name string) *corev1.Service {
	return f.get(api.Service, ns, name).Obj.(*corev1.Service)
}

func wantFieldErr(t *testing.T, res *Result, path string) {
	t.Helper()
	var oe *ObjectError
	if !errors.As(res.Err, &oe) || !errors.Is(res.Err, ErrInvalid) || oe.Field == nil || oe.Field.Path != path {
		t.Fatalf("got %v, want an invalid %s", res.Err, path)
	}
}

// Services get distinct cluster IPs inside the service range; a requested
// free IP is honoured, a taken one or one outside the range is refused;
// headless services get none; the IP survives updates that omit it.
func TestServicesGetClusterIPs(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("default")))
	seen := map[string]bool{}
	for _, name := range []string{"a", "b", "c", "d"} {
		f.mustApply(createCmd(t, service("default", name, corev1.ServiceTypeClusterIP, 80)))
		ip := f.service("default", name).Spec.ClusterIP
		addr, err := netip.ParseAddr(ip)
		if err != nil || !ClusterServiceCIDR.Contains(addr) || seen[ip] {
			t.Fatalf("service %s got cluster IP %q (seen before: %v)", name, ip, seen[ip])
		}
		if got := f.service("default", name).Spec.ClusterIPs; len(got) != 1 || got[0] != ip {
			t.Fatalf("clusterIPs %v, want [%s]", got, ip)
		}
		seen[ip] = true
	}
	asked := service("default", "dns", corev1.ServiceTypeClusterIP, 53)
	asked.Spec.ClusterIP = "10.96.0.10"
	f.mustApply(createCmd(t, asked))
	if ip := f.service("default", "dns").Spec.ClusterIP; ip != "10.96.0.10" {
		t.Fatalf("requested 10.96.0.10, got %s", ip)
	}
	clash := service("default", "clash", corev1.ServiceTypeClusterIP, 53)
	clash.Spec.ClusterIP = "10.96.0.10"
	wantFieldErr(t, f.apply(createCmd(t, clash)), "spec.clusterIP")
	outside := service("default", "outside", corev1.ServiceTypeClusterIP, 53)
	outside.Spec.ClusterIP = "10.97.0.10"
	wantFieldErr(t, f.apply(createCmd(t, outside)), "spec.clusterIP")
	if f.get(api.Service, "default", "clash") != nil || f.get(api.Service, "default", "outside") != nil {
		t.Fatal("a refused service was stored")
	}
	headless := service("default", "db", corev1.ServiceTypeClusterIP, 5432)
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	f.mustApply(createCmd(t, headless))
	if ip := f.service("default", "db").Spec.ClusterIP; ip != corev1.ClusterIPNone {
		t.Fatalf("headless service got %q", ip)
	}
	before := f.service("default", "a")
	upd := service("default", "a", corev1.ServiceTypeClusterIP, 80, 443)
	upd.ResourceVersion = before.ResourceVersion
	f.mustApply(updateCmd(t, upd))
	if ip := f.service("default", "a").Spec.ClusterIP; ip != before.Spec.ClusterIP {
		t.Fatalf("update without clusterIP changed it from %s to %q", before.Spec.ClusterIP, ip)
	}
	f.mustApply(&Delete{Kind: "Service", Namespace: "default", Name: "dns"})
	clash.ResourceVersion = ""
	f.mustApply(createCmd(t, clash))
	if ip := f.service("default", "clash").Spec.ClusterIP; ip != "10.96.0.10" {
		t.Fatalf("a freed IP was not reusable: %s", ip)
	}
}

// NodePort services get a port in 30000-32767 per service port, a
// requested free one is honoured, a taken one refused with its field path;
// ports survive updates that omit them and go when the type goes back to
// ClusterIP.
func TestServicesGetNodePorts(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("default")))
	f.mustApply(createCmd(t, service("default", "web", corev1.ServiceTypeNodePort, 80, 443)))
	web := f.service("default", "web")
	p0, p1 := web.Spec.Ports[0].NodePort, web.Spec.Ports[1].NodePort
	if p0 < api.NodePortMin || p0 > api.NodePortMax || p1 < api.NodePortMin || p1 > api.NodePortMax || p0 == p1 {
		t.Fatalf("node ports %d %d", p0, p1)
	}
	asked := service("default", "asked", corev1.ServiceTypeNodePort, 80)
	asked.Spec.Ports[0].NodePort = 30080
	if p0 == 30080 || p1 == 30080 {
		asked.Spec.Ports[0].NodePort = 30081
	}
	f.mustApply(createCmd(t, asked))
	clash := service("default", "clash", corev1.ServiceTypeNodePort, 80, 81)
	clash.Spec.Ports[1].NodePort = p1
	wantFieldErr(t, f.apply(createCmd(t, clash)), "spec.ports[1].nodePort")

	upd := service("default", "web", corev1.ServiceTypeNodePort, 80, 443)
	upd.ResourceVersion = web.ResourceVersion
	f.mustApply(updateCmd(t, upd))
	if got := f.service("default", "web").Spec.Ports; got[0].NodePort != p0 || got[1].NodePort != p1 {
		t.Fatalf("update without node ports changed them: %d %d -> %d %d", p0, p1, got[0].NodePort, got[1].NodePort)
	}
	back := service("default", "web", corev1.ServiceTypeClusterIP, 80, 443)
	f.mustApply(updateCmd(t, back))
	for _, p := range f.service("default", "web").Spec.Ports {
		if p.NodePort != 0 {
			t.Fatalf("ClusterIP service kept node port %d", p.NodePort)
		}
	}
	clash.Spec.Ports[1].NodePort = p1
	f.mustApply(createCmd(t, clash))
}

// The allocation indexes: a restored FSM still refuses an address or node
// port held by a restored Service and frees them when it goes; a Service
// cannot ask for one node port twice; an updated Service keeps its own.
func TestServiceAllocationIndexes(t *testing.T) {
	src := newTestFSM(t)
	src.mustApply(createCmd(t, namespace("default")))
	held := service("default", "held", corev1.ServiceTypeNodePort, 80)
	held.Spec.ClusterIP, held.Spec.Ports[0].NodePort = "10.96.7.7", 31000
	src.mustApply(createCmd(t, held))
	for i := range 50 {
		src.mustApply(createCmd(t, service("default", "s"+strconv.Itoa(i), corev1.ServiceTypeNodePort, 80)))
	}
	dst := newTestFSM(t)
	if err := dst.Restore(io.NopCloser(bytes.NewReader(snapshotBytes(t, src.View())))); err != nil {
		t.Fatal(err)
	}
	dst.index = src.index
	ip := service("default", "ip", corev1.ServiceTypeClusterIP, 80)
	ip.Spec.ClusterIP = "10.96.7.7"
	wantFieldErr(t, dst.apply(createCmd(t, ip)), "spec.clusterIP")
	port := service("default", "port", corev1.ServiceTypeNodePort, 80)
	port.Spec.Ports[0].NodePort = 31000
	wantFieldErr(t, dst.apply(createCmd(t, port)), "spec.ports[0].nodePort")
	twice := service("default", "twice", corev1.ServiceTypeNodePort, 80, 81)
	twice.Spec.Ports[0].NodePort, twice.Spec.Ports[1].NodePort = 31001, 31001
	wantFieldErr(t, dst.apply(createCmd(t, twice)), "spec.ports[1].nodePort")

	same := dst.service("default", "held").DeepCopy()
	same.Spec.Ports = append(same.Spec.Ports, corev1.ServicePort{Name: "p81", Port: 81, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(8081)})
	dst.mustApply(updateCmd(t, same))
	if got := dst.service("default", "held"); got.Spec.ClusterIP != "10.96.7.7" || got.Spec.Ports[0].NodePort != 31000 || got.Spec.Ports[1].NodePort == 0 {
		t.Fatalf("update lost its own allocations: %s %v", got.Spec.ClusterIP, got.Spec.Ports)
	}
	dst.mustApply(&Delete{Kind: "Service", Namespace: "default", Name: "held"})
	dst.mustApply(createCmd(t, ip))
	dst.mustApply(createCmd(t, port))
	// Every server allocates the same: src, given the same deletes and
	// creates, agrees with the restored dst.
	src.mustApply(&Delete{Kind: "Service", Namespace: "default", Name: "held"})
	ip.ResourceVersion, port.ResourceVersion = "", ""
	src.mustApply(createCmd(t, ip))
	src.mustApply(createCmd(t, port))
	for _, f := range []*testFSM{src, dst} {
		f.mustApply(createCmd(t, service("default", "late", corev1.ServiceTypeNodePort, 80)))
	}
	a, b := src.service("default", "late"), dst.service("default", "late")
	if a.Spec.ClusterIP != b.Spec.ClusterIP || a.Spec.Ports[0].NodePort != b.Spec.Ports[0].NodePort {
		t.Fatalf("servers disagree: %s:%d vs %s:%d", a.Spec.ClusterIP, a.Spec.Ports[0].NodePort, b.Spec.ClusterIP, b.Spec.Ports[0].NodePort)
	}
}
