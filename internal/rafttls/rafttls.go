// Package rafttls carries hashicorp/raft's NetworkTransport over mutual TLS
// with the cluster CA (a raft.StreamLayer). Both ends of every Raft
// connection must present a certificate from the cluster CA carrying the
// server role: a worker's certificate, another CA's, or none at all is
// refused during the handshake, before a byte of Raft is read.
//
// After its handshake succeeds the accepting side writes one byte, so the
// dialing side learns in Dial (not at its first RPC) whether it was
// accepted: TLS 1.3 finishes the client's handshake before the server has
// checked the client's certificate.
//
// The agent's Raft runs over it (agent/raft.go); it replaced an HMAC
// handshake that proved only that both ends held the cluster secret and
// left the traffic in clear. It must never accept a connection whose
// handshake it has not completed, and never fall back to plain TCP.
package rafttls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"orch.dev/orch/internal/pki"
)

// Config configures a StreamLayer.
type Config struct {
	Bind string // listen address, host:port
	// Advertise is the address peers dial (the Raft server address); the
	// listener's address when empty.
	Advertise string
	CA        *x509.Certificate
	Certs     *pki.Certs // this server's certificate, with the server role
	// Check, when set, may refuse a peer whose certificate verifies, e.g.
	// a server removed from the cluster before its certificate expired.
	Check func(pki.Identity) error
	// GetConfig, when set, replaces CA, Certs and Check: it returns the
	// peer tls.Config for each new connection, or an error while this
	// server cannot speak TLS yet (it has no CA); such connections are
	// refused and dials fail, and Raft retries them.
	GetConfig        func() (*tls.Config, error)
	HandshakeTimeout time.Duration // DefaultHandshakeTimeout when zero
	Logger           *slog.Logger  // slog.Default when nil
}

// DefaultHandshakeTimeout bounds a TLS handshake in both directions.
const DefaultHandshakeTimeout = 5 * time.Second

// maxPendingHandshakes bounds the handshakes in progress on the accepting
// side, so unauthenticated connections cannot grow goroutines without end;
// beyond it, accepting waits (the kernel's backlog absorbs the burst).
const maxPendingHandshakes = 64

// accepted is the byte the accepting side writes after a good handshake.
const accepted = 0x01

// ErrClosed is returned by Accept after Close.
var ErrClosed = errors.New("raft TLS stream layer closed")

// StreamLayer is a raft.StreamLayer over mutual TLS.
type StreamLayer struct {
	ln        net.Listener
	advertise net.Addr
	config    func() (*tls.Config, error)
	timeout   time.Duration
	logger    *slog.Logger

	pending   chan struct{}
	conns     chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

var _ raft.StreamLayer = (*StreamLayer)(nil)

// Listen starts a stream layer on cfg.Bind.
func Listen(cfg Config) (*StreamLayer, error) {
	if cfg.GetConfig == nil {
		if cfg.CA == nil || cfg.Certs == nil || cfg.Certs.Current() == nil {
			return nil, errors.New("rafttls: a CA and a server certificate are required")
		}
		static := pki.PeerConfig(cfg.CA, cfg.Certs, pki.Policy{Roles: []pki.Role{pki.RoleServer}, Check: cfg.Check})
		cfg.GetConfig = func() (*tls.Config, error) { return static, nil }
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen on %s: %w", cfg.Bind, err)
	}
	var adv net.Addr = ln.Addr()
	if cfg.Advertise != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.Advertise); err != nil {
			ln.Close()
			return nil, fmt.Errorf("raft advertise address %s: %w", cfg.Advertise, err)
		}
	}
	s := &StreamLayer{
		ln:        ln,
		advertise: adv,
		config:    cfg.GetConfig,
		timeout:   cfg.HandshakeTimeout,
		logger:    cfg.Logger,
		pending:   make(chan struct{}, maxPendingHandshakes),
		conns:     make(chan net.Conn),
		closed:    make(chan struct{}),
	}
	go s.acceptLoop()
	return s, nil
}

func (s *StreamLayer) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			s.logger.Warn("raft accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		select {
		case s.pending <- struct{}{}:
		case <-s.closed:
			c.Close()
			return
		}
		go func() {
			defer func() { <-s.pending }()
			tc, err := s.serverHandshake(c)
			if err != nil {
				s.logger.Warn("refused raft connection", "remote", c.RemoteAddr().String(), "err", err)
				c.Close()
				return
			}
			select {
			case s.conns <- tc:
			case <-s.closed:
				tc.Close()
			}
		}()
	}
}

func (s *StreamLayer) serverHandshake(c net.Conn) (*tls.Conn, error) {
	cfg, err := s.config()
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(s.timeout))
	tc := tls.Server(c, cfg)
	if err := tc.Handshake(); err != nil {
		return nil, err
	}
	if _, err := tc.Write([]byte{accepted}); err != nil {
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return tc, nil
}

// Accept returns the next connection whose handshake succeeded.
func (s *StreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, ErrClosed
	}
}

// Close stops accepting; connections already handed out stay open.
func (s *StreamLayer) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return s.ln.Close()
}

// Addr is the advertised address.
func (s *StreamLayer) Addr() net.Addr { return s.advertise }

// Dial connects to the Raft server at address and completes the mutual
// handshake within timeout (the stream layer's handshake timeout when
// timeout is zero).
func (s *StreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		timeout = s.timeout
	}
	cfg, err := s.config()
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("raft TLS handshake with %s: %w", address, err)
	}
	var b [1]byte
	if _, err := io.ReadFull(tc, b[:]); err != nil || b[0] != accepted {
		c.Close()
		if err == nil {
			err = errors.New("unexpected reply")
		}
		return nil, fmt.Errorf("raft server %s refused this server: %w", address, err)
	}
	c.SetDeadline(time.Time{})
	return tc, nil
}
