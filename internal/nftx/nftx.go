// Package nftx builds the nftables expressions that the proxy backends and
// the worker's pod masquerade share (address/port/protocol matches, marks,
// fib checks, concatenated set keys) and opens netlink connections sized for
// large batches. It owns no kernel objects itself.
package nftx

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Registers: reg 1 is the 16-byte register that concatenations start in;
// 9 and 10 are its second and third 32-bit words.
const (
	Reg1   = 1
	Reg2   = 2
	Reg1w1 = 9
	Reg1w2 = 10
)

// Set key types for "ip daddr . meta l4proto . th dport" and
// "meta l4proto . th dport".
var (
	VIPKeyType      = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	NodePortKeyType = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	PairKeyType     = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIPAddr)
)

// Open returns a lasting connection in the network namespace at nsPath (""
// for the caller's), with socket buffers large enough for batches of
// thousands of messages and their acknowledgements.
func Open(nsPath string) (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(bigBuffers)}
	if nsPath != "" {
		f, err := os.Open(nsPath)
		if err != nil {
			return nil, err
		}
		// The netlink socket keeps the namespace; the fd is only needed
		// while dialling, which New does now for a lasting connection.
		defer f.Close()
		opts = append(opts, nftables.WithNetNSFd(int(f.Fd())))
	}
	return nftables.New(opts...)
}

func bigBuffers(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		for _, o := range []int{unix.SO_SNDBUFFORCE, unix.SO_RCVBUFFORCE} {
			if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 32<<20); e != nil && serr == nil {
				serr = fmt.Errorf("setsockopt %d: %w", o, e)
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// VIPKey encodes addr . proto . port (each field padded to 4 bytes).
func VIPKey(a netip.Addr, proto uint8, port uint16) []byte {
	b := make([]byte, 12)
	copy(b, a.AsSlice())
	b[4] = proto
	binary.BigEndian.PutUint16(b[8:], port)
	return b
}

// ParseVIPKey decodes VIPKey.
func ParseVIPKey(b []byte) (netip.Addr, uint8, uint16, bool) {
	if len(b) != 12 {
		return netip.Addr{}, 0, 0, false
	}
	return netip.AddrFrom4([4]byte(b[:4])), b[4], binary.BigEndian.Uint16(b[8:]), true
}

// NodePortKey encodes proto . port.
func NodePortKey(proto uint8, port uint16) []byte {
	b := make([]byte, 8)
	b[0] = proto
	binary.BigEndian.PutUint16(b[4:], port)
	return b
}

// ParseNodePortKey decodes NodePortKey.
func ParseNodePortKey(b []byte) (uint8, uint16, bool) {
	if len(b) != 8 {
		return 0, 0, false
	}
	return b[0], binary.BigEndian.Uint16(b[4:]), true
}

// PairKey encodes addr . addr.
func PairKey(a, b netip.Addr) []byte {
	return append(a.AsSlice(), b.AsSlice()...)
}

// ParsePairKey decodes PairKey.
func ParsePairKey(b []byte) (netip.Addr, netip.Addr, bool) {
	if len(b) != 8 {
		return netip.Addr{}, netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(b[:4])), netip.AddrFrom4([4]byte(b[4:])), true
}

// Saddr loads the IPv4 source address into reg.
func Saddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}

// Daddr loads the IPv4 destination address into reg.
func Daddr(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

// L4Proto loads meta l4proto into reg.
func L4Proto(reg uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg} }

// Dport loads the transport destination port (th dport) into reg.
func Dport(reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

// VIPTuple loads ip daddr . meta l4proto . th dport into reg 1.
func VIPTuple() []expr.Any { return []expr.Any{Daddr(Reg1), L4Proto(Reg1w1), Dport(Reg1w2)} }

// PortTuple loads meta l4proto . th dport into reg 1.
func PortTuple() []expr.Any { return []expr.Any{L4Proto(Reg1), Dport(Reg1w1)} }

// Lookup matches reg 1 against the named set.
func Lookup(set string) expr.Any { return &expr.Lookup{SourceRegister: Reg1, SetName: set} }

// VMap jumps through the named verdict map keyed by reg 1.
func VMap(set string) expr.Any {
	return &expr.Lookup{SourceRegister: Reg1, SetName: set, DestRegister: 0, IsDestRegSet: true}
}

// InPrefix matches (or, with neg, does not match) the source (src) or
// destination address against an IPv4 prefix.
func InPrefix(src bool, p netip.Prefix, neg bool) []expr.Any {
	load := Daddr(Reg1)
	if src {
		load = Saddr(Reg1)
	}
	m := make([]byte, 4)
	binary.BigEndian.PutUint32(m, ^uint32(0)<<(32-p.Bits()))
	if p.Bits() == 0 {
		m = []byte{0, 0, 0, 0}
	}
	op := expr.CmpOpEq
	if neg {
		op = expr.CmpOpNeq
	}
	return []expr.Any{load,
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4, Mask: m, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: Reg1, Data: p.Masked().Addr().AsSlice()}}
}

// SaddrIs matches ip saddr == a.
func SaddrIs(a netip.Addr) []expr.Any {
	return []expr.Any{Saddr(Reg1), &expr.Cmp{Op: expr.CmpOpEq, Register: Reg1, Data: a.AsSlice()}}
}

// DaddrLocal matches "fib daddr type local".
func DaddrLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: Reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: Reg1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// NotLoopback matches ip daddr != 127.0.0.0/8.
func NotLoopback() []expr.Any {
	return InPrefix(false, netip.MustParsePrefix("127.0.0.0/8"), true)
}

// CtNew matches "ct state new".
func CtNew() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: Reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: Reg1, Data: []byte{0, 0, 0, 0}},
	}
}

// SetMark is "meta mark set mark | bit".
func SetMark(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: Reg1},
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: Reg1},
	}
}

// MarkUnsetReturn is "meta mark & bit == 0 return".
func MarkUnsetReturn(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: Reg1},
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bit), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: Reg1, Data: []byte{0, 0, 0, 0}},
		&expr.Verdict{Kind: expr.VerdictReturn},
	}
}

// ClearMark is "meta mark set mark xor bit" (only used after
// MarkUnsetReturn, so the bit is known to be set).
func ClearMark(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: Reg1},
		&expr.Bitwise{SourceRegister: Reg1, DestRegister: Reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(0)), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: Reg1},
	}
}

// Masquerade is "masquerade fully-random".
func Masquerade() expr.Any { return &expr.Masq{FullyRandom: true} }

// Join concatenates expression lists.
func Join(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Priority returns a chain priority pointer.
func Priority(p int32) *nftables.ChainPriority {
	v := nftables.ChainPriority(p)
	return &v
}

// VerdictChain returns the chain a verdict-map element jumps or goes to.
// (The library returns a read element's verdict as raw NFTA_VERDICT_*
// attributes in Val.)
func VerdictChain(e nftables.SetElement) string {
	if e.VerdictData != nil {
		return e.VerdictData.Chain
	}
	ad, err := netlink.NewAttributeDecoder(e.Val)
	if err != nil {
		return ""
	}
	for ad.Next() {
		if ad.Type() == unix.NFTA_VERDICT_CHAIN {
			return ad.String()
		}
	}
	return ""
}

// NumgenIs matches "numgen random mod modulus == value".
func NumgenIs(modulus, value uint32) []expr.Any {
	return []expr.Any{
		&expr.Numgen{Register: Reg1, Modulus: modulus, Type: unix.NFT_NG_RANDOM},
		&expr.Cmp{Op: expr.CmpOpEq, Register: Reg1, Data: binaryutil.NativeEndian.PutUint32(value)},
	}
}
