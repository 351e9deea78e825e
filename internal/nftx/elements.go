package nftx

import "github.com/google/nftables"

// ElementsPerMessage bounds the set elements sent in one netlink message.
// The elements travel in one nested attribute whose length field has 16
// bits: past 64 KiB it wraps and the kernel misreads the message (seen
// as ENOENT with 10,000 services on the IPVS backend's sets). A thousand
// of the largest elements used here stay far below that.
const ElementsPerMessage = 1000

// AddElements queues the elements' addition to s on c in messages of at
// most ElementsPerMessage elements (one transaction at the next Flush).
func AddElements(c *nftables.Conn, s *nftables.Set, es []nftables.SetElement) error {
	return inChunks(es, func(part []nftables.SetElement) error { return c.SetAddElements(s, part) })
}

// DeleteElements queues the elements' removal from s, in messages of at
// most ElementsPerMessage elements.
func DeleteElements(c *nftables.Conn, s *nftables.Set, es []nftables.SetElement) error {
	return inChunks(es, func(part []nftables.SetElement) error { return c.SetDeleteElements(s, part) })
}

func inChunks(es []nftables.SetElement, fn func([]nftables.SetElement) error) error {
	for len(es) > 0 {
		n := min(len(es), ElementsPerMessage)
		if err := fn(es[:n]); err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}
