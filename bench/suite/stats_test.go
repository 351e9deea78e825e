package suite

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var l Latencies
	for i := 100; i >= 1; i-- {
		l = append(l, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := l.Percentile(c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if got := (Latencies{}).Percentile(99); got != 0 {
		t.Errorf("empty p99 = %v", got)
	}
}

func TestSpreadOf(t *testing.T) {
	s := SpreadOf([]float64{5, 1, 3, 2, 4})
	if s.Median != 3 || s.Min != 1 || s.Max != 5 || s.N != 5 {
		t.Errorf("odd count: %+v", s)
	}
	if s := SpreadOf([]float64{4, 1, 3, 2}); s.Median != 2.5 {
		t.Errorf("even count: median %v, want 2.5", s.Median)
	}
	if got := SpreadOf([]float64{2, 1, 3}).Format(1); got != "2.0 (1.0–3.0)" {
		t.Errorf("Format = %q", got)
	}
}

func TestVerdict(t *testing.T) {
	for _, c := range []struct {
		median, goal float64
		want         string
	}{
		{80, 100, "**met** (80.0 ≤ 100)"},
		{123, 100, "**missed** by 23% (123 > 100)"},
		{6.28, 2, "**missed**: 6.28 is 3.1× the goal of 2.00"},
	} {
		if got := verdictLE(c.median, c.goal); got != c.want {
			t.Errorf("verdictLE(%v, %v) = %q, want %q", c.median, c.goal, got, c.want)
		}
	}
}
