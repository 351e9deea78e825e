package orchd

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
	"k8s.io/apimachinery/pkg/api/resource"
)

// A server keeps the whole cluster state in its heap and allocates for
// every write it applies, so with Go's default GOGC=100 it collects often
// and each collection marks the whole state. Collecting less often (a
// larger --gc-percent) costs memory headroom and saves CPU and the stalls
// a collection causes (measured in BENCHMARKS.md, "Scheduling"). A soft
// memory limit keeps that headroom from growing past what the machine can
// spare: near the limit the runtime collects more often again.

// Server defaults: collect when the heap has grown by 400% of what was live
// after the last collection, and keep the heap under half the machine's
// memory (GOGC and GOMEMLIMIT in the environment take precedence).
const (
	defaultServerGCPercent    = 400
	defaultMemoryLimitPercent = 50
)

func gcFlags() []cli.Flag {
	return []cli.Flag{
		&cli.IntFlag{Name: "gc-percent", Value: defaultServerGCPercent, Usage: "servers: the Go collector's GOGC (heap growth between collections, in % of the live heap); GOGC in the environment overrides it"},
		&cli.StringFlag{Name: "memory-limit", Usage: fmt.Sprintf("servers: soft limit of the Go heap (e.g. 2Gi; 0: none; default: %d%% of the machine's memory); GOMEMLIMIT in the environment overrides it", defaultMemoryLimitPercent)},
	}
}

// gcSettings are what applyGCFlags sets; zero fields are left alone.
type gcSettings struct {
	percent int   // GOGC, 0: leave alone
	limit   int64 // bytes, 0: leave alone
}

// serverGCSettings decides the collector settings of a server from its
// flags, the environment (getenv) and the machine's memory in bytes (0:
// unknown).
func serverGCSettings(c *cli.Context, getenv func(string) string, memTotal int64) (gcSettings, error) {
	var s gcSettings
	pct := c.Int("gc-percent")
	if pct < 0 {
		return s, fmt.Errorf("--gc-percent %d: must be positive (0: leave Go's default)", pct)
	}
	if getenv("GOGC") == "" {
		s.percent = pct
	}
	limit := int64(0)
	if v := c.String("memory-limit"); v != "" {
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			return s, fmt.Errorf("--memory-limit %q: not a size (e.g. 2Gi, or 0 for none)", v)
		}
		limit = q.Value()
	} else if memTotal > 0 {
		limit = memTotal * defaultMemoryLimitPercent / 100
	}
	if getenv("GOMEMLIMIT") == "" {
		s.limit = limit
	}
	return s, nil
}

func (s gcSettings) apply() {
	if s.percent > 0 {
		debug.SetGCPercent(s.percent)
	}
	if s.limit > 0 {
		debug.SetMemoryLimit(s.limit)
	}
}

// machineMemory is MemTotal from /proc/meminfo in bytes (0 when unknown).
func machineMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
