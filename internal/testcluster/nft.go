package testcluster

import (
	"os"
	"strings"

	"github.com/google/nftables"
)

// NFT reads the nftables rule set of a network namespace (a worker host's,
// to see what its service proxy programmed), over one netlink socket.
type NFT struct {
	f *os.File
	c *nftables.Conn
}

// OpenNFT connects to nftables in the namespace at nsPath (/run/netns/X).
func OpenNFT(nsPath string) (*NFT, error) {
	f, err := os.Open(nsPath)
	if err != nil {
		return nil, err
	}
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(f.Fd())))
	if err != nil {
		f.Close()
		return nil, err
	}
	return &NFT{f: f, c: c}, nil
}

// Close releases the socket and the namespace.
func (n *NFT) Close() {
	n.c.CloseLasting()
	n.f.Close()
}

// Chains lists the chains of table (family ip).
func (n *NFT) Chains(table string) (map[string]bool, error) {
	chains, err := n.c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, ch := range chains {
		if ch.Table != nil && ch.Table.Name == table {
			out[ch.Name] = true
		}
	}
	return out, nil
}

// HasChain looks one chain of table (family ip) up by name: a single
// kernel lookup, however large the table.
func (n *NFT) HasChain(table, chain string) (bool, error) {
	_, err := n.c.ListChain(&nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}, chain)
	if err != nil {
		if strings.Contains(err.Error(), "no such file or directory") {
			return false, nil
		}
		return false, err
	}
	return true, nil
}
