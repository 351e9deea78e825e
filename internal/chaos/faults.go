package chaos

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Fault is a named failure. Inject breaks something in a running cluster
// and returns how to repair it.
type Fault struct {
	Name string
	// What the fault does, for reports and docs/chaos.md.
	Doc string
	// Available: a majority of servers keeps working while the fault
	// lasts, so writes must be acknowledged during it (after the election
	// it may cause).
	Available bool
	// Elects: the fault must cost the leader its leadership (a new term
	// begins); if not, it was not injected, and the scenario fails.
	Elects bool
	// NeedsWorkers: the fault needs simulated workers (see Scenario).
	NeedsWorkers bool
	// NeedsSmallDisk: the fault fills a server's data dir, which must be
	// a small tmpfs (SmallDiskSize, on every server).
	NeedsSmallDisk bool
	Inject         func(c *Cluster) (heal func() error, err error)
}

// SmallDiskSize is the tmpfs under each server's data dir when a scenario
// fills disks, and MinFreeDisk the servers' reserve on it.
const (
	SmallDiskSize = 96 << 20
	MinFreeDisk   = "24Mi"
)

// Faults are the named faults, by name.
var Faults = map[string]Fault{}

func register(f Fault) { Faults[f.Name] = f }

func init() {
	register(Fault{Name: "kill-leader", Available: true, Elects: true, Doc: "kill -9 of the leader; restarted when healed",
		Inject: func(c *Cluster) (func() error, error) {
			l := c.WaitLeader(RecoverTimeout)
			l.Kill()
			return l.Start, nil
		}})
	register(Fault{Name: "kill-follower", Available: true, Doc: "kill -9 of a follower; restarted when healed",
		Inject: func(c *Cluster) (func() error, error) {
			f := c.follower()
			if f == nil {
				return nil, errors.New("no follower")
			}
			f.Kill()
			return f.Start, nil
		}})
	register(Fault{Name: "pause-leader", Available: true, Elects: true, Doc: "SIGSTOP of the leader (it hangs with its sockets open); SIGCONT when healed",
		Inject: func(c *Cluster) (func() error, error) {
			l := c.WaitLeader(RecoverTimeout)
			return l.Resume, l.Pause()
		}})
	register(Fault{Name: "partition-leader", Available: true, Elects: true, Doc: "the leader drops every packet to and from the other servers (nftables in its namespace); clients still reach it",
		Inject: func(c *Cluster) (func() error, error) {
			l := c.WaitLeader(RecoverTimeout)
			return l.Heal, l.Partition(c.otherServerIPs(l)...)
		}})
	register(Fault{Name: "partition-follower", Available: true, Doc: "a minority partition: one follower drops every packet to and from the other servers",
		Inject: func(c *Cluster) (func() error, error) {
			f := c.follower()
			if f == nil {
				return nil, errors.New("no follower")
			}
			heal := func() error {
				// The fault took effect: the follower lost the leader.
				if st, err := c.Status(f); err == nil && st.LastContactMs >= 0 && st.LastContactMs < 1000 {
					return fmt.Errorf("%s heard from the leader %d ms ago, though cut off from it", f.Name, st.LastContactMs)
				}
				return f.Heal()
			}
			return heal, f.Partition(c.otherServerIPs(f)...)
		}})
	register(Fault{Name: "asymmetric-leader", Available: true, Elects: true, Doc: "the leader can send to the other servers but receives nothing from them (nftables input rule in its namespace)",
		Inject: func(c *Cluster) (func() error, error) {
			l := c.WaitLeader(RecoverTimeout)
			return l.Heal, l.DropFrom(c.otherServerIPs(l)...)
		}})
	register(Fault{Name: "disk-full-leader", Available: true, Elects: true, NeedsSmallDisk: true,
		Doc: "the leader's data dir (a tmpfs) is filled to the last byte; freed when healed",
		Inject: func(c *Cluster) (func() error, error) {
			l := c.WaitLeader(RecoverTimeout)
			path := filepath.Join(l.DataDir, "chaos-fill")
			heal := func() error { return os.Remove(path) }
			return heal, fillDisk(path)
		}})
	register(Fault{Name: "restart-all", Elects: true, Doc: "kill -9 of every server at once; all restarted when healed",
		Inject: func(c *Cluster) (func() error, error) {
			for _, s := range c.Servers {
				s.Kill()
			}
			return func() error {
				for _, s := range c.Servers {
					if err := s.Start(); err != nil {
						return err
					}
				}
				return nil
			}, nil
		}})
	register(Fault{Name: "partition-worker", Available: true, NeedsWorkers: true,
		Doc: "a worker's link to the bridge goes down (it is cut off from every server); up when healed",
		Inject: func(c *Cluster) (func() error, error) {
			if len(c.Others) == 0 {
				return nil, errors.New("no worker")
			}
			w := c.Others[0]
			return w.LinkUp, w.LinkDown()
		}})
}

// follower returns a running server that is not the leader.
func (c *Cluster) follower() *Host {
	l := c.WaitLeader(RecoverTimeout)
	for _, s := range c.Servers {
		if s != l && s.Running() {
			return s
		}
	}
	return nil
}

func (c *Cluster) otherServerIPs(not *Host) []string {
	var out []string
	for _, s := range c.Servers {
		if s != not {
			out = append(out, s.IP)
		}
	}
	return out
}

// fillDisk writes zeros to path until its filesystem is full.
func fillDisk(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				return err
			}
			// Full to the last MiB: write the last blocks too.
			for n := len(chunk) / 2; n >= 4096; n /= 2 {
				for {
					if _, err := f.Write(chunk[:n]); err != nil {
						break
					}
				}
			}
			return nil
		}
	}
}

// Names lists the faults in a stable order.
func Names() []string { return sortedKeys(Faults) }

func (f Fault) String() string { return fmt.Sprintf("%s (%s)", f.Name, f.Doc) }
