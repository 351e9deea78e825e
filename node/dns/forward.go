package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	mdns "github.com/miekg/dns"
)

// ErrNoUpstream: the node has no resolver to forward names outside the
// cluster zone to.
var ErrNoUpstream = errors.New("dns: no upstream resolver")

// ErrBusy: too many forwarded queries are already waiting for an upstream.
var ErrBusy = errors.New("dns: too many queries in flight upstream")

// forwarder sends queries for names outside the cluster to the node's
// resolvers, in order, until one answers.
type forwarder struct {
	udp, tcp  *mdns.Client
	upstreams atomic.Pointer[[]string] // "ip:port"
	slots     chan struct{}            // bounds the queries in flight
}

func newForwarder(timeout time.Duration, maxInFlight int) *forwarder {
	f := &forwarder{
		// The UDP buffer takes the largest answer an upstream may send; the
		// client's own limit is applied when the answer is passed on.
		udp:   &mdns.Client{Net: "udp", Timeout: timeout, UDPSize: mdns.MaxMsgSize},
		tcp:   &mdns.Client{Net: "tcp", Timeout: timeout},
		slots: make(chan struct{}, maxInFlight),
	}
	f.upstreams.Store(&[]string{})
	return f
}

// forward asks the upstreams for r, trying each in turn: an upstream that
// cannot be reached, does not answer in time, or answers SERVFAIL or
// REFUSED is skipped. A truncated UDP answer is asked again over TCP. The
// reply carries r's ID and question.
func (f *forwarder) forward(ctx context.Context, r *mdns.Msg) (*mdns.Msg, error) {
	ups := *f.upstreams.Load()
	if len(ups) == 0 {
		return nil, ErrNoUpstream
	}
	select {
	case f.slots <- struct{}{}:
		defer func() { <-f.slots }()
	default:
		return nil, ErrBusy
	}
	q := r.Copy()
	var errs []error
	for _, up := range ups {
		q.Id = mdns.Id() // a fresh, unpredictable ID for every upstream exchange
		resp, err := f.exchange(ctx, q, up)
		if err == nil && (resp.Rcode == mdns.RcodeServerFailure || resp.Rcode == mdns.RcodeRefused) {
			err = fmt.Errorf("%s", mdns.RcodeToString[resp.Rcode])
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", up, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		resp.Id, resp.Question = r.Id, r.Question
		return resp, nil
	}
	return nil, errors.Join(errs...)
}

func (f *forwarder) exchange(ctx context.Context, q *mdns.Msg, up string) (*mdns.Msg, error) {
	resp, _, err := f.udp.ExchangeContext(ctx, q, up)
	if err != nil || !resp.Truncated {
		return resp, err
	}
	full, _, err := f.tcp.ExchangeContext(ctx, q, up)
	if err != nil {
		return resp, nil // the truncated answer still tells the client to retry over TCP
	}
	return full, nil
}

// upstreamAddrs turns resolver addresses ("ip" or "ip:port") into
// "ip:port", leaving out self, the server's own address: forwarding to it
// would loop. With self bound to the unspecified address, every loopback
// resolver on the same port is self too.
func upstreamAddrs(list []string, self string) ([]string, error) {
	var selfAP netip.AddrPort
	if self != "" {
		selfAP, _ = netip.ParseAddrPort(self)
	}
	var out []string
	for _, s := range list {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			ip, err2 := netip.ParseAddr(s)
			if err2 != nil {
				return nil, fmt.Errorf("dns: upstream %q: not an address or address:port", s)
			}
			ap = netip.AddrPortFrom(ip, 53)
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap().WithZone(ap.Addr().Zone()), ap.Port())
		if selfAP.IsValid() && ap.Port() == selfAP.Port() && (ap.Addr() == selfAP.Addr() ||
			(selfAP.Addr().IsUnspecified() && ap.Addr().IsLoopback())) {
			continue
		}
		a := ap.String()
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out, nil
}
