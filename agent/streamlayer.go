package agent

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer carries Raft over TCP. With a key, every connection starts
// with a mutual challenge-response (HMAC-SHA256 over fresh nonces from both
// ends), so only holders of the cluster secret can speak Raft to a server.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	key       []byte
	logger    *slog.Logger

	conns     chan net.Conn
	closeOnce sync.Once
	closed    chan struct{}
}

const (
	handshakeMagic   = "ORCHRAFT1"
	handshakeTimeout = 5 * time.Second
	nonceSize        = 32
)

var errHandshake = errors.New("raft connection handshake failed")

func newStreamLayer(bind, advertise string, key []byte, logger *slog.Logger) (*streamLayer, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("raft listen on %s: %w", bind, err)
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s := &streamLayer{ln: ln, advertise: adv, key: key, logger: logger, conns: make(chan net.Conn), closed: make(chan struct{})}
	go s.acceptLoop()
	return s, nil
}

func (s *streamLayer) acceptLoop() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.logger.Warn("raft accept failed", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			if s.key != nil {
				if err := serverHandshake(c, s.key); err != nil {
					s.logger.Warn("refused raft connection", "remote", c.RemoteAddr().String(), "err", err)
					c.Close()
					return
				}
			}
			select {
			case s.conns <- c:
			case <-s.closed:
				c.Close()
			}
		}()
	}
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.closed:
		return nil, errors.New("raft stream layer closed")
	}
}

func (s *streamLayer) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return s.ln.Close()
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil {
		return nil, err
	}
	if s.key != nil {
		if err := clientHandshake(c, s.key); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

func mac(key []byte, role string, a, b []byte) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(role))
	h.Write(a)
	h.Write(b)
	return h.Sum(nil)
}

func clientHandshake(c net.Conn, key []byte) error {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	cn := make([]byte, nonceSize)
	rand.Read(cn)
	if _, err := c.Write(append([]byte(handshakeMagic), cn...)); err != nil {
		return fmt.Errorf("%w: %v", errHandshake, err)
	}
	reply := make([]byte, nonceSize+sha256.Size)
	if _, err := io.ReadFull(c, reply); err != nil {
		return fmt.Errorf("%w: server closed the connection (wrong cluster token?)", errHandshake)
	}
	sn := reply[:nonceSize]
	if !hmac.Equal(reply[nonceSize:], mac(key, "server", cn, sn)) {
		return fmt.Errorf("%w: server does not hold the cluster token", errHandshake)
	}
	if _, err := c.Write(mac(key, "client", cn, sn)); err != nil {
		return fmt.Errorf("%w: %v", errHandshake, err)
	}
	return nil
}

func serverHandshake(c net.Conn, key []byte) error {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	hello := make([]byte, len(handshakeMagic)+nonceSize)
	if _, err := io.ReadFull(c, hello); err != nil {
		return fmt.Errorf("%w: %v", errHandshake, err)
	}
	if string(hello[:len(handshakeMagic)]) != handshakeMagic {
		return fmt.Errorf("%w: not an orch raft client", errHandshake)
	}
	cn := hello[len(handshakeMagic):]
	sn := make([]byte, nonceSize)
	rand.Read(sn)
	if _, err := c.Write(append(sn, mac(key, "server", cn, sn)...)); err != nil {
		return fmt.Errorf("%w: %v", errHandshake, err)
	}
	proof := make([]byte, sha256.Size)
	if _, err := io.ReadFull(c, proof); err != nil {
		return fmt.Errorf("%w: %v", errHandshake, err)
	}
	if !hmac.Equal(proof, mac(key, "client", cn, sn)) {
		return fmt.Errorf("%w: client does not hold the cluster token", errHandshake)
	}
	return nil
}
