package cli

import (
	"slices"
	"testing"
)

// list-peers' health columns say what is wrong in a word.
func TestPeerHealthCells(t *testing.T) {
	yes, no := true, false
	ms := func(v int64) *int64 { return &v }
	idx := func(v uint64) *uint64 { return &v }
	cases := []struct {
		name string
		p    peer
		want []string
	}{
		{"no leader answered", peer{ID: "s1"}, []string{"unknown", "-", "-", "-"}},
		{"leader", peer{Leader: true, Status: "alive", Healthy: &yes, LastContactMs: ms(0), AppliedIndex: idx(120), Lag: idx(0)}, []string{"healthy", "-", "120", "0"}},
		{"follower", peer{Status: "alive", Healthy: &yes, LastContactMs: ms(12), AppliedIndex: idx(118), Lag: idx(2)}, []string{"healthy", "12ms", "118", "2"}},
		{"lagging", peer{Status: "alive", Healthy: &no, LastContactMs: ms(40), AppliedIndex: idx(10), Lag: idx(900)}, []string{"unhealthy", "40ms", "10", "900"}},
		{"never heard from a leader", peer{Status: "alive", Healthy: &no, LastContactMs: ms(-1), AppliedIndex: idx(0), Lag: idx(5)}, []string{"unhealthy", "never", "0", "5"}},
		{"dead", peer{Status: "dead", Healthy: &no}, []string{"dead", "-", "-", "-"}},
		{"not answering", peer{Status: "alive", Healthy: &no}, []string{"unreachable", "-", "-", "-"}},
		{"disk full", peer{Status: "alive", Healthy: &no, DiskLow: true, LastContactMs: ms(5), AppliedIndex: idx(7), Lag: idx(1)}, []string{"disk full", "5ms", "7", "1"}},
	}
	for _, tc := range cases {
		if got := tc.p.healthCells(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
