package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Reasons Compute leaves a Service (or one of its ports) out of the rule set.
// Compute never programs half of an invalid Service: a bad ClusterIP drops
// the whole Service, a bad port drops that port.
var (
	ErrInvalidService = errors.New("invalid service")
	ErrUnsupported    = errors.New("unsupported")
	ErrConflict       = errors.New("virtual server claimed by another service")
)

// DefaultAffinityTimeout is Kubernetes' default ClientIP affinity timeout.
const DefaultAffinityTimeout = 10800 * time.Second

// Compute is the desired rule set for services and their endpoints: for each
// service port a virtual server on ClusterIP:port (unless headless) and, for
// NodePort services, one on the node port. Only ready addresses become
// endpoints; named target ports are resolved the way kube-proxy does, through
// the Endpoints port carrying the service port's name. Services are taken in
// namespace/name order so that a conflict (two services claiming one
// virtual server, possible for a moment with stale reads) always resolves to
// the same winner. The errors say what was left out and why.
func Compute(services []*corev1.Service, endpoints []*corev1.Endpoints) (RuleSet, []error) {
	eps := make(map[string]*corev1.Endpoints, len(endpoints))
	for _, e := range endpoints {
		eps[e.Namespace+"/"+e.Name] = e
	}
	m := newModel()
	touched := map[Key]bool{}
	for _, s := range services {
		name := s.Namespace + "/" + s.Name
		m.update(name, s, eps[name], touched)
	}
	return m.desired, m.problems()
}

func computeService(s *corev1.Service, ep *corev1.Endpoints) ([]*VirtualServer, []error) {
	name := s.Namespace + "/" + s.Name
	if s.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil, nil // headless: DNS only
	}
	var vip netip.Addr
	if s.Spec.ClusterIP != "" {
		a, err := netip.ParseAddr(s.Spec.ClusterIP)
		switch {
		case err != nil:
			return nil, []error{fmt.Errorf("%s: clusterIP %q: %w", name, s.Spec.ClusterIP, ErrInvalidService)}
		case !a.Is4():
			return nil, []error{fmt.Errorf("%s: clusterIP %s: IPv6: %w", name, a, ErrUnsupported)}
		}
		vip = a
	}
	var affinity time.Duration
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		affinity = DefaultAffinityTimeout
		if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			affinity = time.Duration(*c.ClientIP.TimeoutSeconds) * time.Second
		}
		if affinity <= 0 {
			return nil, []error{fmt.Errorf("%s: sessionAffinity timeout %s: %w", name, affinity, ErrInvalidService)}
		}
	}
	var out []*VirtualServer
	var errs []error
	for _, sp := range s.Spec.Ports {
		pname := fmt.Sprintf("%s:%s", name, portName(sp))
		proto, ok := protocolOf(sp.Protocol)
		if !ok {
			errs = append(errs, fmt.Errorf("%s: protocol %s: %w", pname, sp.Protocol, ErrUnsupported))
			continue
		}
		if sp.Port <= 0 || sp.Port > 65535 || sp.NodePort < 0 || sp.NodePort > 65535 {
			errs = append(errs, fmt.Errorf("%s: port %d nodePort %d: %w", pname, sp.Port, sp.NodePort, ErrInvalidService))
			continue
		}
		endpoints := endpointsFor(ep, sp.Name, proto)
		if vip.IsValid() {
			out = append(out, &VirtualServer{Key: Key{vip, proto, uint16(sp.Port)}, Name: pname,
				Affinity: affinity, Endpoints: endpoints})
		}
		if s.Spec.Type == corev1.ServiceTypeNodePort && sp.NodePort != 0 {
			out = append(out, &VirtualServer{Key: Key{Proto: proto, Port: uint16(sp.NodePort)}, Name: pname,
				Affinity: affinity, Endpoints: slices.Clone(endpoints)})
		}
	}
	return out, errs
}

func portName(sp corev1.ServicePort) string {
	if sp.Name != "" {
		return sp.Name
	}
	return fmt.Sprint(sp.Port)
}

func protocolOf(p corev1.Protocol) (Protocol, bool) {
	switch p {
	case corev1.ProtocolTCP, "":
		return TCP, true
	case corev1.ProtocolUDP:
		return UDP, true
	}
	return 0, false
}

// endpointsFor collects the ready addresses of the subsets that carry the
// service port: the Endpoints port has the service port's name (the endpoints
// controller resolved a named targetPort per pod into its number).
func endpointsFor(ep *corev1.Endpoints, portName string, proto Protocol) []Endpoint {
	if ep == nil {
		return nil
	}
	var out []Endpoint
	for _, ss := range ep.Subsets {
		for _, p := range ss.Ports {
			if pp, ok := protocolOf(p.Protocol); !ok || pp != proto || p.Name != portName || p.Port <= 0 || p.Port > 65535 {
				continue
			}
			for _, a := range ss.Addresses {
				ip, err := netip.ParseAddr(a.IP)
				if err != nil || !ip.Is4() {
					continue
				}
				out = append(out, Endpoint{Addr: netip.AddrPortFrom(ip, uint16(p.Port)), Weight: 1})
			}
			// ss.NotReadyAddresses get nothing: not even a draining entry
			// from Compute (the Proxier drains what was ready before).
		}
	}
	return SortEndpoints(out)
}
