package suite

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Latencies collects every sample of one run; at these sizes (at most a
// few hundred thousand per run) keeping them all is cheaper to get right
// than a histogram and gives exact percentiles.
type Latencies []time.Duration

// Percentile returns the nearest-rank percentile p (0..100) of the samples,
// or 0 when there are none. It sorts the samples in place.
func (l Latencies) Percentile(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	if !slices.IsSorted(l) {
		slices.Sort(l)
	}
	rank := int(math.Ceil(p / 100 * float64(len(l))))
	rank = min(max(rank, 1), len(l))
	return l[rank-1]
}

// Ms is a duration in milliseconds, as reported.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Spread is the median and range of one figure over several runs.
type Spread struct {
	Median, Min, Max float64
	N                int
}

// SpreadOf summarises per-run values. The median of an even count is the
// mean of the two middle values.
func SpreadOf(vals []float64) Spread {
	if len(vals) == 0 {
		return Spread{}
	}
	v := slices.Clone(vals)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Spread{Median: med, Min: v[0], Max: v[len(v)-1], N: len(v)}
}

// Format prints "median (min–max)" with the given number of decimals.
func (s Spread) Format(decimals int) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.*f", decimals, s.Median)
	}
	return fmt.Sprintf("%.*f (%.*f–%.*f)", decimals, s.Median, decimals, s.Min, decimals, s.Max)
}

// digits picks a readable number of decimals for a value's magnitude.
func digits(v float64) int {
	switch a := math.Abs(v); {
	case a >= 100:
		return 0
	case a >= 10:
		return 1
	default:
		return 2
	}
}

// Auto formats with decimals chosen from the median's magnitude.
func (s Spread) Auto() string { return s.Format(digits(s.Median)) }
