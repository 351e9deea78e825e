package chaos

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Terms maps a Raft term to the servers seen leading in it.
type Terms map[uint64]map[string]bool

func (t Terms) add(term uint64, name string) {
	if t[term] == nil {
		t[term] = map[string]bool{}
	}
	t[term][name] = true
}

// leaderWatch samples every server's status while a scenario runs and
// records who says it leads in which term. A sample counts only when two
// reads in a row agree (state Leader, itself as leader, the same term), so
// that a status read torn by a concurrent step-down is not taken for a
// second leader.
type leaderWatch struct {
	c    *Cluster
	mu   sync.Mutex
	seen Terms
	stop chan struct{}
	done chan struct{}
}

func watchLeaders(c *Cluster) *leaderWatch {
	lw := &leaderWatch{c: c, seen: Terms{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(lw.done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-lw.stop:
				return
			case <-tick.C:
			}
			first := c.Statuses()
			second := c.Statuses()
			lw.mu.Lock()
			for h, a := range first {
				b, ok := second[h]
				if ok && a.State == "Leader" && b.State == "Leader" && a.Leader == h.Name && b.Leader == h.Name && a.Term == b.Term {
					lw.seen.add(a.Term, h.Name)
				}
			}
			lw.mu.Unlock()
		}
	}()
	return lw
}

func (lw *leaderWatch) Stop() Terms {
	close(lw.stop)
	<-lw.done
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.seen
}

// electionWon matches hashicorp/raft's log line of a won election.
var electionWon = regexp.MustCompile(`msg="election won".*\bterm=(\d+)`)

// LeadersFromLogs reads, from every server's log, the terms it won: every
// leadership begins with that line, so none is missed between samples.
func LeadersFromLogs(hosts []*Host) (Terms, error) {
	out := Terms{}
	for _, h := range hosts {
		if !h.Server {
			continue
		}
		f, err := os.Open(h.LogPath)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, "election won") {
				continue
			}
			if m := electionWon.FindStringSubmatch(line); m != nil {
				term, _ := strconv.ParseUint(m[1], 10, 64)
				out.add(term, h.Name)
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CheckLeaders reports every term that more than one server led, in any of
// the observations.
func CheckLeaders(obs ...Terms) []string {
	all := Terms{}
	for _, o := range obs {
		for term, names := range o {
			for n := range names {
				all.add(term, n)
			}
		}
	}
	var terms []uint64
	for t := range all {
		terms = append(terms, t)
	}
	sort.Slice(terms, func(i, j int) bool { return terms[i] < terms[j] })
	var out []string
	for _, t := range terms {
		if len(all[t]) > 1 {
			out = append(out, fmt.Sprintf("term %d had %d leaders: %s", t, len(all[t]), strings.Join(sortedKeys(all[t]), ", ")))
		}
	}
	return out
}
