package fsm

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/netdefaults"
)

// ClusterServiceCIDR is the range service virtual IPs come from
// (DESIGN.md). Like the pod range it is a cluster-wide constant: every
// server must allocate identically.
var ClusterServiceCIDR = netdefaults.ServiceCIDR

// FieldError is an allocation refused for one field of the object; the
// API reports it as 422 Invalid with the field's path.
type FieldError struct {
	Path  string // e.g. spec.ports[0].nodePort
	Value string
}

// allocateService gives a new or updated Service its cluster IP and node
// ports: those it asks for when free, otherwise free ones picked
// deterministically (every server computes the same choice from the same
// state). old is the stored version on update, nil on create.
func (a *applier) allocateService(svc, old *corev1.Service) *Result {
	ipUsed, portUsed := a.serviceAllocations(svc)
	// Ports given to this service's earlier ports in this same call.
	taken := map[int32]bool{}
	usedPort := func(p int32) bool { return taken[p] || portUsed(p) }
	ns, name := svc.Namespace, svc.Name
	sp := &svc.Spec
	if old != nil && sp.ClusterIP == "" {
		sp.ClusterIP = old.Spec.ClusterIP
	}
	switch ip := sp.ClusterIP; {
	case ip == corev1.ClusterIPNone:
	case ip == "":
		free, ok := freeServiceIP(ipUsed, ns+"/"+name)
		if !ok {
			return fieldErr(api.Service, ns, name, "spec.clusterIP", "", "no free address left in the service range %s", ClusterServiceCIDR)
		}
		sp.ClusterIP = free.String()
	default:
		addr, err := netip.ParseAddr(ip)
		switch {
		case err != nil:
			return fieldErr(api.Service, ns, name, "spec.clusterIP", ip, "must be a valid IP address")
		case !ClusterServiceCIDR.Contains(addr) || addr == ClusterServiceCIDR.Addr():
			return fieldErr(api.Service, ns, name, "spec.clusterIP", ip, "provided IP is not in the valid range. The range of valid IPs is %s", ClusterServiceCIDR)
		case ipUsed(addr):
			return fieldErr(api.Service, ns, name, "spec.clusterIP", ip, "provided IP is already allocated")
		}
	}
	sp.ClusterIPs = []string{sp.ClusterIP}
	if sp.ClusterIP != corev1.ClusterIPNone {
		single := corev1.IPFamilyPolicySingleStack
		sp.IPFamilies, sp.IPFamilyPolicy = []corev1.IPFamily{corev1.IPv4Protocol}, &single
	}
	for i := range sp.Ports {
		p := &sp.Ports[i]
		if sp.Type != corev1.ServiceTypeNodePort {
			p.NodePort = 0
			continue
		}
		path := "spec.ports[" + strconv.Itoa(i) + "].nodePort"
		if p.NodePort == 0 && old != nil {
			p.NodePort = previousNodePort(old, p)
		}
		if p.NodePort != 0 {
			if usedPort(p.NodePort) {
				return fieldErr(api.Service, ns, name, path, strconv.Itoa(int(p.NodePort)), "provided port is already allocated")
			}
			taken[p.NodePort] = true
			continue
		}
		port, ok := freeNodePort(usedPort, ns+"/"+name+"/"+strconv.Itoa(i))
		if !ok {
			return fieldErr(api.Service, ns, name, path, "", "no free node port left in %d-%d", api.NodePortMin, api.NodePortMax)
		}
		p.NodePort = port
		taken[port] = true
	}
	return nil
}

// serviceAllocations answers, through the Service table's cluster-IP and
// node-port indexes, whether an address or a node port is held by a Service
// other than svc: a lookup per question instead of a scan of every Service
// per create. (The indexes are part of the memdb schema, so a snapshot
// restore rebuilds them with the records.)
func (a *applier) serviceAllocations(svc *corev1.Service) (ipUsed func(netip.Addr) bool, portUsed func(int32) bool) {
	self := ObjectKey(api.Service, svc.Namespace, svc.Name)
	held := func(index, value string) bool {
		it, err := a.txn.Get(api.Service.Resource, index, value)
		if err != nil {
			panic(err) // the indexes are in the static schema
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if raw.(*Record).Key != self {
				return true
			}
		}
		return false
	}
	ipUsed = func(addr netip.Addr) bool { return held(indexClusterIP, addr.String()) }
	portUsed = func(port int32) bool { return held(indexNodePort, strconv.Itoa(int(port))) }
	return ipUsed, portUsed
}

// serviceClusterIPIndexer indexes Services by their cluster IP (canonical
// form); headless Services and those without one are not in the index.
type serviceClusterIPIndexer struct{}

func (serviceClusterIPIndexer) FromObject(raw any) (bool, []byte, error) {
	s := raw.(*Record).Obj.(*corev1.Service)
	addr, err := netip.ParseAddr(s.Spec.ClusterIP)
	if err != nil {
		return false, nil, nil
	}
	return true, []byte(addr.String() + "\x00"), nil
}

func (serviceClusterIPIndexer) FromArgs(args ...any) ([]byte, error) { return stringArg(args) }

// serviceNodePortIndexer indexes Services by each node port they hold.
type serviceNodePortIndexer struct{}

func (serviceNodePortIndexer) FromObject(raw any) (bool, [][]byte, error) {
	s := raw.(*Record).Obj.(*corev1.Service)
	var out [][]byte
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			out = append(out, []byte(strconv.Itoa(int(p.NodePort))+"\x00"))
		}
	}
	return len(out) > 0, out, nil
}

func (serviceNodePortIndexer) FromArgs(args ...any) ([]byte, error) { return stringArg(args) }

func stringArg(args []any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index takes one argument")
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("index argument must be a string")
	}
	return []byte(s + "\x00"), nil
}

// previousNodePort is the node port the stored version gave the same port.
func previousNodePort(old *corev1.Service, p *corev1.ServicePort) int32 {
	for _, q := range old.Spec.Ports {
		if q.NodePort != 0 && q.Port == p.Port && q.Protocol == p.Protocol {
			return q.NodePort
		}
	}
	return 0
}

func hashOf(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// freeServiceIP probes the service range from a point derived from key;
// the network address and the first host (the API's own service, as in
// Kubernetes) are skipped unless key is that service.
func freeServiceIP(used func(netip.Addr) bool, key string) (netip.Addr, bool) {
	base := ClusterServiceCIDR.Addr().As4()
	size := uint32(1) << (32 - ClusterServiceCIDR.Bits())
	start := uint32(hashOf(key) % uint64(size))
	for i := range size {
		off := (start + i) % size
		if off < 2 {
			continue
		}
		addr := netip.AddrFrom4([4]byte{base[0], base[1], byte(off >> 8), byte(off)})
		if !used(addr) {
			return addr, true
		}
	}
	return netip.Addr{}, false
}

func freeNodePort(used func(int32) bool, key string) (int32, bool) {
	size := uint64(api.NodePortMax - api.NodePortMin + 1)
	start := hashOf(key) % size
	for i := range size {
		port := int32(api.NodePortMin + (start+i)%size)
		if !used(port) {
			return port, true
		}
	}
	return 0, false
}

func fieldErr(k *api.Kind, ns, name, path, value, format string, args ...any) *Result {
	return &Result{Err: &ObjectError{Err: ErrInvalid, Kind: k, Namespace: ns, Name: name,
		Msg: fmt.Sprintf(format, args...), Field: &FieldError{Path: path, Value: value}}}
}
