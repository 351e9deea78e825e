package fsm

import (
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
)

// ClusterServiceCIDR is the range service virtual IPs come from
// (DESIGN.md). Like the pod range it is a cluster-wide constant: every
// server must allocate identically.
var ClusterServiceCIDR = netip.MustParsePrefix("10.96.0.0/16")

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
	usedIPs, usedPorts := a.serviceAllocations(svc)
	ns, name := svc.Namespace, svc.Name
	sp := &svc.Spec
	if old != nil && sp.ClusterIP == "" {
		sp.ClusterIP = old.Spec.ClusterIP
	}
	switch ip := sp.ClusterIP; {
	case ip == corev1.ClusterIPNone:
	case ip == "":
		free, ok := freeServiceIP(usedIPs, ns+"/"+name)
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
		case usedIPs[addr]:
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
			if usedPorts[p.NodePort] {
				return fieldErr(api.Service, ns, name, path, strconv.Itoa(int(p.NodePort)), "provided port is already allocated")
			}
			usedPorts[p.NodePort] = true
			continue
		}
		port, ok := freeNodePort(usedPorts, ns+"/"+name+"/"+strconv.Itoa(i))
		if !ok {
			return fieldErr(api.Service, ns, name, path, "", "no free node port left in %d-%d", api.NodePortMin, api.NodePortMax)
		}
		p.NodePort = port
		usedPorts[port] = true
	}
	return nil
}

// serviceAllocations lists the cluster IPs and node ports held by every
// Service other than svc.
func (a *applier) serviceAllocations(svc *corev1.Service) (map[netip.Addr]bool, map[int32]bool) {
	ips, ports := map[netip.Addr]bool{}, map[int32]bool{}
	for _, rec := range a.collect(api.Service.Resource, indexID) {
		s := rec.Obj.(*corev1.Service)
		if s.Namespace == svc.Namespace && s.Name == svc.Name {
			continue
		}
		if addr, err := netip.ParseAddr(s.Spec.ClusterIP); err == nil {
			ips[addr] = true
		}
		for _, p := range s.Spec.Ports {
			if p.NodePort != 0 {
				ports[p.NodePort] = true
			}
		}
	}
	return ips, ports
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
func freeServiceIP(used map[netip.Addr]bool, key string) (netip.Addr, bool) {
	base := ClusterServiceCIDR.Addr().As4()
	size := uint32(1) << (32 - ClusterServiceCIDR.Bits())
	start := uint32(hashOf(key) % uint64(size))
	for i := range size {
		off := (start + i) % size
		if off < 2 {
			continue
		}
		addr := netip.AddrFrom4([4]byte{base[0], base[1], byte(off >> 8), byte(off)})
		if !used[addr] {
			return addr, true
		}
	}
	return netip.Addr{}, false
}

func freeNodePort(used map[int32]bool, key string) (int32, bool) {
	size := uint64(api.NodePortMax - api.NodePortMin + 1)
	start := hashOf(key) % size
	for i := range size {
		port := int32(api.NodePortMin + (start+i)%size)
		if !used[port] {
			return port, true
		}
	}
	return 0, false
}

func fieldErr(k *api.Kind, ns, name, path, value, format string, args ...any) *Result {
	return &Result{Err: &ObjectError{Err: ErrInvalid, Kind: k, Namespace: ns, Name: name,
		Msg: fmt.Sprintf(format, args...), Field: &FieldError{Path: path, Value: value}}}
}
