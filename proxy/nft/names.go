package nft

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"orch.dev/orch/proxy"
)

// Object names carry the virtual server (and endpoint) they belong to, so
// Read can rebuild the rule set from chain and set names alone, and a sync
// can touch one virtual server's objects without looking at the others:
//
//	svc-10.96.0.10-tcp-80                      service chain (ClusterIP)
//	svc-np-tcp-30080                           service chain (NodePort)
//	ep-10.96.0.10-tcp-80-10.244.1.5-8080       endpoint chain
//	aff-10.96.0.10-tcp-80-10.244.1.5-8080-600  affinity set, timeout in seconds
//
// The affinity timeout is in the set's name because a set's timeout cannot
// be changed: a new timeout is a new set, swapped in by the same transaction.

func vsID(k proxy.Key) string {
	if k.IsNodePort() {
		return fmt.Sprintf("np-%s-%d", k.Proto, k.Port)
	}
	return fmt.Sprintf("%s-%s-%d", k.Addr, k.Proto, k.Port)
}

func svcChain(k proxy.Key) string { return "svc-" + vsID(k) }

func epSuffix(a netip.AddrPort) string { return fmt.Sprintf("%s-%d", a.Addr(), a.Port()) }

func epChain(k proxy.Key, a netip.AddrPort) string { return "ep-" + vsID(k) + "-" + epSuffix(a) }

func affSet(k proxy.Key, a netip.AddrPort, timeout time.Duration) string {
	return fmt.Sprintf("aff-%s-%s-%d", vsID(k), epSuffix(a), int64(timeout/time.Second))
}

// parseID parses the first three dash-separated fields of an id.
func parseID(f []string) (proxy.Key, bool) {
	if len(f) < 3 {
		return proxy.Key{}, false
	}
	proto, ok := proxy.ParseProtocol(f[1])
	port, err := strconv.ParseUint(f[2], 10, 16)
	if !ok || err != nil {
		return proxy.Key{}, false
	}
	k := proxy.Key{Proto: proto, Port: uint16(port)}
	if f[0] != "np" {
		a, err := netip.ParseAddr(f[0])
		if err != nil || !a.Is4() {
			return proxy.Key{}, false
		}
		k.Addr = a
	}
	return k, true
}

func parseAddrPort(ip, port string) (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(ip)
	p, perr := strconv.ParseUint(port, 10, 16)
	if err != nil || perr != nil || !a.Is4() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(p)), true
}

// object is what a chain or set name says it belongs to.
type object struct {
	kind    byte // 's' service chain, 'e' endpoint chain, 'a' affinity set
	key     proxy.Key
	ep      netip.AddrPort
	timeout time.Duration
}

func parseName(name string) (object, bool) {
	prefix, rest, ok := strings.Cut(name, "-")
	if !ok {
		return object{}, false
	}
	f := strings.Split(rest, "-")
	k, ok := parseID(f)
	if !ok {
		return object{}, false
	}
	o := object{key: k}
	switch {
	case prefix == "svc" && len(f) == 3:
		o.kind = 's'
	case prefix == "ep" && len(f) == 5:
		o.kind = 'e'
		o.ep, ok = parseAddrPort(f[3], f[4])
	case prefix == "aff" && len(f) == 6:
		o.kind = 'a'
		o.ep, ok = parseAddrPort(f[3], f[4])
		secs, err := strconv.ParseUint(f[5], 10, 32)
		ok = ok && err == nil && secs > 0
		o.timeout = time.Duration(secs) * time.Second
	default:
		return object{}, false
	}
	// Only names this package would produce count as its own.
	if ok {
		switch o.kind {
		case 's':
			ok = name == svcChain(k)
		case 'e':
			ok = name == epChain(k, o.ep)
		case 'a':
			ok = name == affSet(k, o.ep, o.timeout)
		}
	}
	return o, ok
}
