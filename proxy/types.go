package proxy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Protocol is an IP protocol number; only TCP and UDP are proxied.
type Protocol uint8

const (
	TCP Protocol = 6
	UDP Protocol = 17
)

func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto%d", uint8(p))
}

// ParseProtocol is the inverse of Protocol.String.
func ParseProtocol(s string) (Protocol, bool) {
	switch s {
	case "tcp":
		return TCP, true
	case "udp":
		return UDP, true
	}
	return 0, false
}

// Key identifies a virtual server. A ClusterIP service port has Addr set; a
// NodePort has the zero Addr and means "this port on every node address".
type Key struct {
	Addr  netip.Addr
	Proto Protocol
	Port  uint16
}

// IsNodePort reports whether the key is a NodePort (no specific address).
func (k Key) IsNodePort() bool { return !k.Addr.IsValid() }

func (k Key) String() string {
	if k.IsNodePort() {
		return fmt.Sprintf("nodeport/%s/%d", k.Proto, k.Port)
	}
	return fmt.Sprintf("%s/%s/%d", k.Addr, k.Proto, k.Port)
}

// Compare orders keys: ClusterIPs (by address) before NodePorts, then by
// protocol and port.
func (k Key) Compare(o Key) int {
	if c := boolCmp(k.IsNodePort(), o.IsNodePort()); c != 0 {
		return c
	}
	if c := k.Addr.Compare(o.Addr); c != 0 {
		return c
	}
	if k.Proto != o.Proto {
		return int(k.Proto) - int(o.Proto)
	}
	return int(k.Port) - int(o.Port)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

// Endpoint is one backend of a virtual server. Weight 1 takes new
// connections; weight 0 is draining: existing connections keep flowing, new
// ones never go to it.
type Endpoint struct {
	Addr   netip.AddrPort
	Weight int
}

// VirtualServer is the rule set for one Key.
type VirtualServer struct {
	Key Key
	// Name is "namespace/name:port" of the Service, for logs only; backends
	// need not preserve it (it is not part of Equal).
	Name string
	// Affinity is the ClientIP session-affinity timeout; 0 means none.
	Affinity time.Duration
	// Endpoints sorted by address, unique.
	Endpoints []Endpoint
}

// Ready counts the endpoints that take new connections.
func (v *VirtualServer) Ready() int {
	n := 0
	for _, e := range v.Endpoints {
		if e.Weight > 0 {
			n++
		}
	}
	return n
}

// Endpoint returns the endpoint with address a.
func (v *VirtualServer) Endpoint(a netip.AddrPort) (Endpoint, bool) {
	i, ok := slices.BinarySearchFunc(v.Endpoints, a, func(e Endpoint, a netip.AddrPort) int { return e.Addr.Compare(a) })
	if !ok {
		return Endpoint{}, false
	}
	return v.Endpoints[i], true
}

// Equal compares everything a backend programs.
func (v *VirtualServer) Equal(o *VirtualServer) bool {
	return v.Key == o.Key && v.Affinity == o.Affinity && slices.Equal(v.Endpoints, o.Endpoints)
}

// Clone returns a deep copy.
func (v *VirtualServer) Clone() *VirtualServer {
	c := *v
	c.Endpoints = slices.Clone(v.Endpoints)
	return &c
}

func (v *VirtualServer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", v.Key)
	if v.Affinity > 0 {
		fmt.Fprintf(&b, " affinity=%s", v.Affinity)
	}
	b.WriteString(" ->")
	for _, e := range v.Endpoints {
		fmt.Fprintf(&b, " %s", e.Addr)
		if e.Weight != 1 {
			fmt.Fprintf(&b, "(w%d)", e.Weight)
		}
	}
	return b.String()
}

// SortEndpoints sorts by address and drops duplicates (keeping the highest
// weight).
func SortEndpoints(eps []Endpoint) []Endpoint {
	slices.SortFunc(eps, func(a, b Endpoint) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		return b.Weight - a.Weight
	})
	return slices.CompactFunc(eps, func(a, b Endpoint) bool { return a.Addr == b.Addr })
}

// RuleSet is every virtual server on a node.
type RuleSet map[Key]*VirtualServer

// Keys returns the keys in Compare order.
func (rs RuleSet) Keys() []Key {
	ks := make([]Key, 0, len(rs))
	for k := range rs {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, Key.Compare)
	return ks
}

// Clone returns a deep copy.
func (rs RuleSet) Clone() RuleSet {
	c := make(RuleSet, len(rs))
	for k, v := range rs {
		c[k] = v.Clone()
	}
	return c
}

// Equal reports whether two rule sets program the same rules.
func (rs RuleSet) Equal(o RuleSet) bool {
	if len(rs) != len(o) {
		return false
	}
	for k, v := range rs {
		w, ok := o[k]
		if !ok || !v.Equal(w) {
			return false
		}
	}
	return true
}

// String lists the virtual servers one per line, in key order.
func (rs RuleSet) String() string {
	var b strings.Builder
	for _, k := range rs.Keys() {
		b.WriteString(rs[k].String())
		b.WriteByte('\n')
	}
	return b.String()
}
