package proxy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func changes(cs []Change) string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s %s", c.Op, c.Key))
	}
	return strings.Join(out, ", ")
}

func TestDiff(t *testing.T) {
	tests := []struct {
		name     string
		old, new []string
		want     string
	}{
		{"nothing", nil, nil, ""},
		{"unchanged virtual servers produce nothing",
			[]string{"10.96.0.1:80 10.0.0.1:80", "10.96.0.2:80 10.0.0.2:80"},
			[]string{"10.96.0.2:80 10.0.0.2:80", "10.96.0.1:80 10.0.0.1:80"}, ""},
		{"one endpoint change touches one virtual server",
			[]string{"10.96.0.1:80 10.0.0.1:80", "10.96.0.2:80 10.0.0.2:80"},
			[]string{"10.96.0.1:80 10.0.0.1:80", "10.96.0.2:80 10.0.0.2:80 10.0.0.3:80"}, "update 10.96.0.2/tcp/80"},
		{"weight and affinity are changes",
			[]string{"10.96.0.1:80 10.0.0.1:80", "10.96.0.2:80"},
			[]string{"10.96.0.1:80 ~10.0.0.1:80", "10.96.0.2:80 a=10s"}, "update 10.96.0.1/tcp/80, update 10.96.0.2/tcp/80"},
		{"adds in key order, then removes",
			[]string{"10.96.0.9:80", "10.96.0.1:80"},
			[]string{"10.96.0.3:80", "10.96.0.2:80", "10.96.0.1:80"}, "add 10.96.0.2/tcp/80, add 10.96.0.3/tcp/80, remove 10.96.0.9/tcp/80"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := changes(Diff(ruleSet(t, tc.old...), ruleSet(t, tc.new...))); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestEndpointDiff(t *testing.T) {
	old := parseVS(t, "10.96.0.1:80 10.0.0.1:80 10.0.0.2:80 ~10.0.0.3:80 10.0.0.5:80")
	new := parseVS(t, "10.96.0.1:80 10.0.0.0:80 ~10.0.0.2:80 10.0.0.3:80 10.0.0.4:80 10.0.0.5:80 10.0.0.6:80")
	a, r, w := EndpointDiff(old, new)
	str := func(es []Endpoint) string { return fmt.Sprint(es) }
	if got, want := str(a), "[{10.0.0.0:80 1} {10.0.0.4:80 1} {10.0.0.6:80 1}]"; got != want {
		t.Errorf("added %s, want %s", got, want)
	}
	if got, want := str(r), "[{10.0.0.1:80 1}]"; got != want {
		t.Errorf("removed %s, want %s", got, want)
	}
	if got, want := str(w), "[{10.0.0.2:80 0} {10.0.0.3:80 1}]"; got != want {
		t.Errorf("reweighted %s, want %s", got, want)
	}
	if a, r, w := EndpointDiff(nil, new); len(a) != 6 || r != nil || w != nil {
		t.Errorf("from nil: %v %v %v", a, r, w)
	}
}

// drainAll runs drains.apply over every key of applied and desired, as a
// sync that looks at everything does.
func drainAll(dr *drains, applied, desired RuleSet, now time.Time) RuleSet {
	out := RuleSet{}
	for _, rs := range []RuleSet{applied, desired} {
		for k := range rs {
			if _, done := out[k]; done {
				continue
			}
			if v := dr.apply(k, applied[k], desired[k], now); v != nil {
				out[k] = v
			}
		}
	}
	return out
}

func TestDrains(t *testing.T) {
	t0 := time.Unix(1000, 0)
	timeout := 10 * time.Second
	ep := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	k1 := parseVS(t, "10.96.0.1:80").Key

	// An endpoint disappears: kept at weight 0, due at t0+10s.
	applied := ruleSet(t, "10.96.0.1:80 10.0.0.1:80 10.0.0.2:80", "10.96.0.2:80 10.0.0.9:80")
	desired := ruleSet(t, "10.96.0.1:80 10.0.0.1:80")
	dr := newDrains(timeout)
	got := drainAll(dr, applied, desired, t0)
	if want := ruleSet(t, "10.96.0.1:80 10.0.0.1:80 ~10.0.0.2:80"); !got.Equal(want) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if !dr.next().Equal(t0.Add(timeout)) || !dr.since[k1][ep("10.0.0.2:80")].Equal(t0) || len(dr.keys()) != 1 {
		t.Fatalf("next %v since %v", dr.next(), dr.since)
	}
	if desired[k1].Ready() != 1 || len(desired[k1].Endpoints) != 1 {
		t.Fatalf("apply modified its input: %s", desired[k1])
	}

	// Still draining later, with the original start time.
	got = drainAll(dr, got, desired, t0.Add(5*time.Second))
	if len(got[k1].Endpoints) != 2 || !dr.next().Equal(t0.Add(timeout)) {
		t.Fatalf("at +5s: %s next %v", got[k1], dr.next())
	}
	// Due: gone.
	got = drainAll(dr, got, desired, t0.Add(10*time.Second))
	if len(got[k1].Endpoints) != 1 || !dr.next().IsZero() || len(dr.keys()) != 0 {
		t.Fatalf("at +10s: %s next %v since %v", got[k1], dr.next(), dr.since)
	}

	// Back before it was due: ready again, no longer draining.
	dr = newDrains(timeout)
	got = drainAll(dr, applied, desired, t0)
	back := ruleSet(t, "10.96.0.1:80 10.0.0.1:80 10.0.0.2:80")
	got = drainAll(dr, got, back, t0.Add(time.Second))
	if !got.Equal(back) || len(dr.keys()) != 0 || !dr.next().IsZero() {
		t.Fatalf("re-added: %s since %v", got, dr.since)
	}

	// A draining endpoint found in the kernel at start (weight 0) drains
	// from now; a virtual server removed entirely goes at once; no drain
	// timeout deletes at once.
	dr = newDrains(timeout)
	got = drainAll(dr, ruleSet(t, "10.96.0.1:80 ~10.0.0.2:80", "10.96.0.3:80 10.0.0.7:80"), ruleSet(t, "10.96.0.1:80"), t0)
	if len(got) != 1 || len(got[k1].Endpoints) != 1 || !dr.next().Equal(t0.Add(timeout)) {
		t.Fatalf("from kernel: %s", got)
	}
	got = drainAll(newDrains(0), applied, desired, t0)
	if !got.Equal(desired) {
		t.Fatalf("no timeout: %s", got)
	}
}
