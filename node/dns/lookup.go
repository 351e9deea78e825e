package dns

import (
	"net/netip"
	"strings"

	mdns "github.com/miekg/dns"
)

// specVersion is the version of the Kubernetes DNS specification served,
// answered as TXT for dns-version.<zone>.
const specVersion = "1.1.0"

// answerer fills one reply from the index; the Store's read lock is held.
type answerer struct {
	s     *Store
	ix    *index
	m     *mdns.Msg
	qname string // as asked, so the answer echoes the client's case
	qtype uint16
	ttl   uint32
}

// resolveZone answers a question whose canonical name is in the cluster
// zone: records, an empty NOERROR (with the SOA) for a name that exists
// without records of the type asked, or NXDOMAIN (with the SOA).
func (s *Store) resolveZone(m *mdns.Msg, q mdns.Question, name string, ttl uint32) {
	rel := strings.TrimSuffix(strings.TrimSuffix(name, s.zone), ".")
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	if !s.synced {
		m.Rcode = mdns.RcodeServerFailure
		return
	}
	a := answerer{s: s, ix: s.ix, m: m, qname: q.Name, qtype: q.Qtype, ttl: ttl}
	if !a.zone(rel) {
		m.Rcode = mdns.RcodeNameError
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soaLocked(s.zone, ttl))
	}
}

// resolvePTR answers a reverse lookup of ip: PTR records for a ClusterIP or
// a headless endpoint, NXDOMAIN for any other address inside one of the
// authoritative prefixes (the service and pod CIDRs). It reports false for
// an address the cluster knows nothing about: that query is forwarded.
func (s *Store) resolvePTR(m *mdns.Msg, q mdns.Question, ip netip.Addr, ttl uint32, authoritative []netip.Prefix) bool {
	zone := ""
	for _, p := range authoritative {
		if p.Contains(ip) {
			zone = reverseZone(p)
			break
		}
	}
	s.rmu.RLock()
	defer s.rmu.RUnlock()
	targets := s.ix.ptr[ip]
	switch {
	case len(targets) == 0 && zone == "":
		return false
	case !s.synced:
		m.Rcode = mdns.RcodeServerFailure
		return true
	case len(targets) == 0:
		m.Rcode = mdns.RcodeNameError
	case q.Qtype == mdns.TypePTR || q.Qtype == mdns.TypeANY:
		for _, t := range targets {
			m.Answer = append(m.Answer, &mdns.PTR{Hdr: header(q.Name, mdns.TypePTR, ttl), Ptr: t})
		}
		return true
	}
	if zone == "" {
		zone = "in-addr.arpa."
	}
	m.Ns = append(m.Ns, s.soaLocked(zone, ttl))
	return true
}

func (s *Store) soaLocked(owner string, ttl uint32) mdns.RR {
	return &mdns.SOA{Hdr: header(owner, mdns.TypeSOA, ttl), Ns: "ns.dns." + s.zone, Mbox: "hostmaster." + s.zone,
		Serial: s.serial, Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl}
}

func header(name string, t uint16, ttl uint32) mdns.RR_Header {
	return mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET, Ttl: ttl}
}

// zone answers rel, the name relative to the zone ("" for the apex), and
// reports whether the name exists.
func (a *answerer) zone(rel string) bool {
	if rel == "" {
		if a.wants(mdns.TypeSOA) {
			a.m.Answer = append(a.m.Answer, a.s.soaLocked(a.s.zone, a.ttl))
		}
		return true
	}
	labels := strings.Split(rel, ".")
	n := len(labels)
	switch labels[n-1] {
	case "svc":
		return a.svc(labels[:n-1])
	case "pod":
		return a.pod(labels[:n-1])
	case "dns-version":
		if n != 1 {
			return false
		}
		if a.wants(mdns.TypeTXT) {
			a.m.Answer = append(a.m.Answer, &mdns.TXT{Hdr: header(a.qname, mdns.TypeTXT, a.ttl), Txt: []string{specVersion}})
		}
		return true
	}
	return false
}

// svc answers the labels in front of "svc": <ns>, <svc>.<ns>,
// <endpoint>.<svc>.<ns>, _<proto>.<svc>.<ns> or _<port>._<proto>.<svc>.<ns>.
func (a *answerer) svc(l []string) bool {
	n := len(l)
	switch n {
	case 0:
		return true
	case 1:
		return a.ix.namespaces[l[0]] > 0
	}
	e := a.ix.services[svcKey{ns: l[n-1], name: l[n-2]}]
	if e == nil {
		return false
	}
	switch n {
	case 2:
		a.addA(a.qname, e.ips)
		return true
	case 3:
		if strings.HasPrefix(l[0], "_") {
			return e.protos[l[0]]
		}
		ips, ok := e.hosts[l[0]]
		if ok {
			a.addA(a.qname, ips)
		}
		return ok
	case 4:
		targets := e.srv[l[0]+"."+l[1]]
		if len(targets) == 0 {
			return false
		}
		if a.wants(mdns.TypeSRV) {
			a.addSRV(e, targets)
		}
		return true
	}
	return false
}

// pod answers the labels in front of "pod": <ns> or <a-b-c-d>.<ns>. Like
// kube-dns, any well-formed address answers: the name tells nothing the
// asker did not already know.
func (a *answerer) pod(l []string) bool {
	switch len(l) {
	case 0, 1:
		return true
	case 2:
		ip, ok := undashed(l[0])
		if ok {
			a.addA(a.qname, []netip.Addr{ip})
		}
		return ok
	}
	return false
}

func (a *answerer) wants(t uint16) bool { return a.qtype == t || a.qtype == mdns.TypeANY }

// addA adds A records for ips, starting at a rotating offset so that
// clients that take the first address spread over all of them.
func (a *answerer) addA(owner string, ips []netip.Addr) {
	if !a.wants(mdns.TypeA) || len(ips) == 0 {
		return
	}
	start := 0
	if len(ips) > 1 {
		start = int(a.s.rotate.Add(1) % uint32(len(ips)))
	}
	for i := range ips {
		ip := ips[(start+i)%len(ips)].As4()
		a.m.Answer = append(a.m.Answer, &mdns.A{Hdr: header(owner, mdns.TypeA, a.ttl), A: ip[:]})
	}
}

// addSRV adds one SRV record per target, equally weighted, and the
// targets' addresses in the additional section.
func (a *answerer) addSRV(e *service, targets []srvTarget) {
	weight := uint16(max(1, 100/len(targets)))
	seen := map[string]bool{}
	for _, t := range targets {
		name, ips := e.fqdn, e.ips
		if t.label != "" {
			name, ips = t.label+"."+e.fqdn, e.hosts[t.label]
		}
		a.m.Answer = append(a.m.Answer, &mdns.SRV{Hdr: header(a.qname, mdns.TypeSRV, a.ttl),
			Priority: 0, Weight: weight, Port: t.port, Target: name})
		if seen[name] {
			continue
		}
		seen[name] = true
		for _, ip := range ips {
			b := ip.As4()
			a.m.Extra = append(a.m.Extra, &mdns.A{Hdr: header(name, mdns.TypeA, a.ttl), A: b[:]})
		}
	}
}
