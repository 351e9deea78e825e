package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// Config configures a Server. Zero values take the defaults shown.
type Config struct {
	// Addr is the address both listeners bind, "ip:port". A worker binds
	// the pod bridge's gateway, port 53. With port 0 a free port is chosen,
	// the same for UDP and TCP.
	Addr string
	// Zone is the cluster domain: cluster.local.
	Zone string
	// TTL of answers, and of negative answers through the SOA: 5 s (as
	// CoreDNS), so changes reach caching clients quickly.
	TTL time.Duration
	// ResolvConf is the node's resolver configuration, read for the
	// upstream resolvers: /etc/resolv.conf.
	ResolvConf string
	// Upstreams, when set, replace those of ResolvConf: "ip" or "ip:port".
	Upstreams []string
	// ForwardTimeout bounds one exchange with one upstream: 2 s.
	ForwardTimeout time.Duration
	// MaxForwards bounds the forwarded queries in flight; beyond it queries
	// are refused with SERVFAIL: 1000.
	MaxForwards int
	// ReverseCIDRs are the prefixes whose reverse names the server answers
	// itself, with NXDOMAIN for addresses it does not know (the service and
	// pod CIDRs); reverse names of other addresses it does not know are
	// forwarded.
	ReverseCIDRs []netip.Prefix
	// ReloadInterval is how often ResolvConf is read again: 30 s.
	ReloadInterval time.Duration
	Log            *slog.Logger
}

// Server answers DNS queries on one node: names in the cluster zone from
// its Store, all others through the node's resolvers.
type Server struct {
	*Store // feed it with Watch or its On*/Replace* methods

	cfg Config
	ttl uint32
	log *slog.Logger
	fwd *forwarder
	ctx atomic.Pointer[context.Context] // ends forwarded queries when Serve returns

	mu        sync.Mutex
	pc        net.PacketConn
	ln        net.Listener
	upstreams []string // as configured or read, before leaving out self

	queries, forwarded, servfails atomic.Uint64
}

// Stats counts the queries a Server answered.
type Stats struct {
	Queries   uint64 // all queries
	Forwarded uint64 // answered by an upstream
	ServFail  uint64 // answered SERVFAIL: no upstream answered, or the zone is not listed yet
}

// New returns a Server; Listen and Serve (or Run) start it. It reads the
// upstream resolvers now, so a broken configuration fails here.
func New(cfg Config) (*Server, error) {
	if cfg.TTL == 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = 2 * time.Second
	}
	if cfg.MaxForwards == 0 {
		cfg.MaxForwards = 1000
	}
	if cfg.ReloadInterval == 0 {
		cfg.ReloadInterval = 30 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("dns: address %q: %w", cfg.Addr, err)
	}
	s := &Server{Store: NewStore(cfg.Zone), cfg: cfg, ttl: uint32(cfg.TTL / time.Second), log: cfg.Log,
		fwd: newForwarder(cfg.ForwardTimeout, cfg.MaxForwards)}
	bg := context.Background()
	s.ctx.Store(&bg)
	if err := s.ReloadUpstreams(); err != nil {
		return nil, err
	}
	return s, nil
}

// ReloadUpstreams reads the upstream resolvers again (Serve does it every
// ReloadInterval); Config.Upstreams, when set, never change.
func (s *Server) ReloadUpstreams() error {
	list := s.cfg.Upstreams
	if len(list) == 0 {
		rc, err := ReadResolvConf(s.cfg.ResolvConf)
		if err != nil {
			return fmt.Errorf("dns: upstream resolvers: %w", err)
		}
		list = rc.Nameservers
	}
	if _, err := upstreamAddrs(list, ""); err != nil {
		return err
	}
	s.mu.Lock()
	s.upstreams = list
	s.mu.Unlock()
	s.applyUpstreams()
	return nil
}

func (s *Server) applyUpstreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	self := ""
	if s.pc != nil {
		self = s.pc.LocalAddr().String()
	}
	ups, _ := upstreamAddrs(s.upstreams, self)
	if len(ups) == 0 {
		s.log.Warn("dns: no upstream resolver: names outside the cluster will fail", "configured", s.upstreams)
	}
	s.fwd.upstreams.Store(&ups)
}

// Upstreams are the resolvers queries are forwarded to, in order.
func (s *Server) Upstreams() []string { return append([]string(nil), *s.fwd.upstreams.Load()...) }

// Stats returns the counters.
func (s *Server) Stats() Stats {
	return Stats{Queries: s.queries.Load(), Forwarded: s.forwarded.Load(), ServFail: s.servfails.Load()}
}

// Listen binds the UDP and TCP sockets, so that an address in use fails
// here, before anything is served.
func (s *Server) Listen() error {
	if s.Addr() != "" {
		return errors.New("dns: already listening")
	}
	host, port, _ := net.SplitHostPort(s.cfg.Addr)
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", s.cfg.Addr)
		if err != nil {
			return fmt.Errorf("dns: %w", err)
		}
		bound := strconv.Itoa(pc.LocalAddr().(*net.UDPAddr).Port)
		ln, err := net.Listen("tcp", net.JoinHostPort(host, bound))
		if err != nil {
			pc.Close()
			if port == "0" && try < 20 { // the UDP port chosen is taken for TCP: choose another
				continue
			}
			return fmt.Errorf("dns: %w", err)
		}
		s.mu.Lock()
		s.pc, s.ln = pc, ln
		s.mu.Unlock()
		break
	}
	s.applyUpstreams() // leave out our own address now that it is known
	return nil
}

// Addr is the bound address ("ip:port"), or "" before Listen.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil {
		return ""
	}
	return s.pc.LocalAddr().String()
}

// Run listens and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	if s.Addr() == "" {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	return s.Serve(ctx)
}

// Serve answers queries on the sockets Listen bound until ctx ends, then
// closes them. It returns nil when ctx ends, or the error a listener failed
// with.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	pc, ln := s.pc, s.ln
	s.mu.Unlock()
	if pc == nil {
		return errors.New("dns: Serve before Listen")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.ctx.Store(&ctx)
	servers := []*mdns.Server{
		{PacketConn: pc, Handler: s, UDPSize: mdns.DefaultMsgSize},
		{Listener: ln, Handler: s},
	}
	started := make(chan struct{}, len(servers))
	errc := make(chan error, len(servers))
	for _, srv := range servers {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() { errc <- srv.ActivateAndServe() }()
	}
	// Shutdown fails on a server that has not started: wait for each to
	// start or fail before anything may shut them down.
	var err error
	running := 0
	for range servers {
		select {
		case <-started:
			running++
		case err = <-errc:
		}
	}
	if err == nil {
		var tick <-chan time.Time
		if len(s.cfg.Upstreams) == 0 {
			t := time.NewTicker(s.cfg.ReloadInterval)
			defer t.Stop()
			tick = t.C
		}
	loop:
		for {
			select {
			case <-ctx.Done():
				break loop
			case err = <-errc:
				running--
				break loop
			case <-tick:
				if rerr := s.ReloadUpstreams(); rerr != nil {
					s.log.Warn("dns: reading the upstream resolvers", "err", rerr)
				}
			}
		}
	}
	cancel()
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	for _, srv := range servers {
		srv.ShutdownContext(sctx) // a server that already failed says so; nothing to do
	}
	pc.Close() // Shutdown closed them, unless their server never started
	ln.Close()
	for range running {
		<-errc
	}
	return err
}

// ServeDNS answers one query; it implements miekg/dns's Handler.
func (s *Server) ServeDNS(w mdns.ResponseWriter, r *mdns.Msg) {
	m := s.answer(r)
	limit := mdns.MaxMsgSize
	if !isTCP(w) {
		limit = mdns.MinMsgSize
		if o := r.IsEdns0(); o != nil {
			limit = int(o.UDPSize())
		}
	}
	m.Truncate(limit)
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dns: writing an answer", "err", err)
	}
}

// answer computes the reply to r.
func (s *Server) answer(r *mdns.Msg) *mdns.Msg {
	s.queries.Add(1)
	m := new(mdns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = true
	switch {
	case r.Opcode != mdns.OpcodeQuery:
		m.Rcode = mdns.RcodeNotImplemented
		return m
	case len(r.Question) != 1:
		m.Rcode = mdns.RcodeFormatError
		return m
	}
	q := r.Question[0]
	name := mdns.CanonicalName(q.Name)
	local := name == s.zone || strings.HasSuffix(name, s.dotZone)
	if local && q.Qclass != mdns.ClassINET && q.Qclass != mdns.ClassANY {
		m.Rcode = mdns.RcodeRefused
		return m
	}
	if local {
		m.Authoritative = true
		s.resolveZone(m, q, name, s.ttl)
		return s.finish(r, m)
	}
	if ip, ok := reverseIPv4(name); ok && q.Qclass == mdns.ClassINET && s.resolvePTR(m, q, ip, s.ttl, s.cfg.ReverseCIDRs) {
		m.Authoritative = true
		return s.finish(r, m)
	}
	resp, err := s.fwd.forward(*s.ctx.Load(), r)
	if err != nil {
		s.log.Debug("dns: forwarding failed", "name", q.Name, "type", mdns.TypeToString[q.Qtype], "err", err)
		m.Rcode = mdns.RcodeServerFailure
		return s.finish(r, m)
	}
	s.forwarded.Add(1)
	return resp
}

// finish adds an OPT record when the query had one (EDNS0: the client
// takes larger UDP answers) and counts failures.
func (s *Server) finish(r, m *mdns.Msg) *mdns.Msg {
	if m.Rcode == mdns.RcodeServerFailure {
		s.servfails.Add(1)
	}
	if r.IsEdns0() != nil {
		m.SetEdns0(mdns.DefaultMsgSize, false)
	}
	return m
}

// isTCP reports whether a query came over TCP (its answer is not bounded by
// a UDP payload size).
func isTCP(w mdns.ResponseWriter) bool {
	_, ok := w.RemoteAddr().(*net.TCPAddr)
	return ok
}
