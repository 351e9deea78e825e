package chaos

import (
	"strings"
	"testing"
	"time"
)

// The checker on synthetic histories: it must pass what is correct and
// catch each kind of anomaly the suite exists to find.

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func create(key, value string, version uint64) Op {
	return Op{Client: -1, Kind: OpCreate, Key: key, Value: value, RespValue: value, Version: version, Outcome: OK, Call: 0, Return: ms(1)}
}

func read(c int, key, value string, version uint64, call, ret int) Op {
	return Op{Client: c, Kind: OpRead, Key: key, Value: value, Version: version, Outcome: OK, Call: ms(call), Return: ms(ret)}
}

func cas(c int, key string, expect uint64, value string, out Outcome, version uint64, call, ret int) Op {
	op := Op{Client: c, Kind: OpCAS, Key: key, Expect: expect, Value: value, Outcome: out, Call: ms(call), Return: ms(ret)}
	if out == OK {
		op.Version, op.RespValue = version, value
	}
	return op
}

func versions(pairs ...any) []Version {
	var out []Version
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, Version{Version: uint64(pairs[i].(int)), Value: pairs[i+1].(string)})
	}
	return out
}

func TestCheckerFindsAnomalies(t *testing.T) {
	base := []Op{create("k", "init", 5)}
	good := History{Keys: []string{"k"},
		Ops: append(append([]Op{}, base...),
			read(0, "k", "init", 5, 10, 20),
			cas(0, "k", 5, "a", OK, 9, 30, 40),
			cas(1, "k", 5, "b", Conflict, 0, 32, 45),
			read(1, "k", "a", 9, 50, 60),
			// Concurrent with the read before it: may land either side.
			cas(2, "k", 9, "c", OK, 12, 55, 70),
			read(2, "k", "c", 12, 80, 90),
		),
		Versions: map[string][]Version{"k": versions(5, "init", 9, "a", 12, "c")},
	}
	tests := []struct {
		name string
		h    func() History
		want string // a substring of a violation; "" = none
	}{
		{"linearizable", func() History { return good }, ""},
		{"stale read", func() History {
			h := clone(good)
			// After "a" was acknowledged (40 ms), a read returns the older value.
			h.Ops = append(h.Ops, read(3, "k", "init", 5, 100, 110))
			return h
		}, "not linearizable"},
		{"lost write", func() History {
			h := clone(good)
			h.Ops = append(h.Ops, cas(0, "k", 12, "d", OK, 15, 100, 110), read(1, "k", "c", 12, 120, 130))
			return h
		}, "acknowledged write lost"},
		{"two writes from one version", func() History {
			h := clone(good)
			h.Ops = append(h.Ops, cas(0, "k", 12, "d", OK, 15, 100, 110), cas(1, "k", 12, "e", OK, 16, 100, 110))
			h.Versions["k"] = append(h.Versions["k"], versions(15, "d", 16, "e")...)
			return h
		}, "not linearizable"},
		{"refused write applied", func() History {
			h := clone(good)
			h.Ops = append(h.Ops, cas(0, "k", 12, "d", Conflict, 0, 100, 110))
			h.Versions["k"] = append(h.Versions["k"], versions(15, "d")...)
			return h
		}, "refused with 409 was applied"},
		{"conflict though the version matched", func() History {
			h := clone(good)
			h.Ops = append(h.Ops, cas(0, "k", 12, "d", Conflict, 0, 100, 110))
			return h
		}, "not linearizable"},
		{"phantom value", func() History {
			h := clone(good)
			h.Versions["k"] = append(h.Versions["k"], versions(20, "zzz")...)
			return h
		}, "written by no client"},
		{"response of another write", func() History {
			h := clone(good)
			op := cas(0, "k", 12, "d", OK, 16, 100, 110)
			op.RespValue = "e"
			h.Ops = append(h.Ops, op)
			h.Versions["k"] = append(h.Versions["k"], versions(15, "d", 16, "e")...)
			return h
		}, "response describes another write"},
		{"acknowledged at another version", func() History {
			h := clone(good)
			h.Versions["k"] = versions(5, "init", 9, "a", 13, "c")
			return h
		}, "acknowledged at version 12"},
		{"unknown write applied, then read", func() History {
			h := clone(good)
			h.Ops = append(h.Ops, cas(0, "k", 12, "d", Unknown, 0, 100, 0), read(1, "k", "d", 15, 200, 210))
			h.Versions["k"] = append(h.Versions["k"], versions(15, "d")...)
			return h
		}, ""},
		{"unknown write never applied", func() History {
			h := clone(good)
			h.Ops = append(h.Ops, cas(0, "k", 12, "d", Unknown, 0, 100, 0), read(1, "k", "c", 12, 200, 210))
			return h
		}, ""},
		{"unknown write read before it was invoked", func() History {
			h := clone(good)
			h.Ops = append(h.Ops, read(1, "k", "d", 15, 95, 99), cas(0, "k", 12, "d", Unknown, 0, 100, 0))
			h.Versions["k"] = append(h.Versions["k"], versions(15, "d")...)
			return h
		}, "not linearizable"},
		{"incomplete final history: unknown writes stay open", func() History {
			h := clone(good)
			h.Gap = "test"
			h.Ops = append(h.Ops, cas(0, "k", 12, "d", Unknown, 0, 100, 0), read(1, "k", "d", 15, 200, 210),
				cas(2, "k", 12, "e", Unknown, 0, 100, 0), read(1, "k", "d", 15, 220, 230))
			return h
		}, "incomplete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := CheckWith(tt.h(), time.Minute, "")
			all := strings.Join(r.Violations, "\n")
			if tt.want == "" {
				if len(r.Violations) > 0 {
					t.Fatalf("violations in a correct history:\n%s", all)
				}
				return
			}
			if !strings.Contains(all, tt.want) {
				t.Fatalf("want a violation containing %q, got %d:\n%s", tt.want, len(r.Violations), all)
			}
		})
	}
}

// An unknown write whose value is still read as not applied afterwards is
// fine whether or not the final history knows about it; in an incomplete
// history the model itself must accept both fates.
func TestModelUnknownBothWays(t *testing.T) {
	for _, applied := range []bool{true, false} {
		h := History{Keys: []string{"k"}, Gap: "test", Versions: map[string][]Version{},
			Ops: []Op{create("k", "init", 5), cas(0, "k", 5, "a", Unknown, 0, 10, 0)}}
		if applied {
			h.Ops = append(h.Ops, read(1, "k", "a", 7, 20, 30), cas(1, "k", 7, "b", OK, 9, 40, 50), read(2, "k", "b", 9, 60, 70))
		} else {
			h.Ops = append(h.Ops, read(1, "k", "init", 5, 20, 30), cas(1, "k", 5, "b", OK, 9, 40, 50), read(2, "k", "b", 9, 60, 70))
		}
		if r := CheckWith(h, time.Minute, ""); r.Linearizable != "ok" {
			t.Errorf("applied=%t: %s", applied, strings.Join(r.Violations, "\n"))
		}
	}
}

func TestCheckLeaders(t *testing.T) {
	a, b := Terms{}, Terms{}
	a.add(3, "s1")
	a.add(4, "s2")
	b.add(4, "s2")
	if v := CheckLeaders(a, b); len(v) != 0 {
		t.Fatalf("one leader per term reported as %v", v)
	}
	b.add(3, "s3")
	if v := CheckLeaders(a, b); len(v) != 1 || !strings.Contains(v[0], "term 3 had 2 leaders: s1, s3") {
		t.Fatalf("two leaders in term 3 reported as %v", v)
	}
}

func clone(h History) History {
	out := h
	out.Ops = append([]Op(nil), h.Ops...)
	out.Versions = map[string][]Version{}
	for k, v := range h.Versions {
		out.Versions[k] = append([]Version(nil), v...)
	}
	return out
}

// A history split by a barrier is checked segment by segment, each one
// starting from the barrier's reads, and anomalies are caught on either
// side of it.
func TestCheckerSegments(t *testing.T) {
	barrier := func(value string, version uint64, start, end int) Barrier {
		rd := read(-2, "k", value, version, start, end-1)
		return Barrier{Start: ms(start), End: ms(end), Reads: map[string]Op{"k": rd}}
	}
	mk := func(extra ...Op) History {
		b := barrier("a", 9, 100, 110)
		h := History{Keys: []string{"k"}, Barriers: []Barrier{b},
			Ops:      []Op{create("k", "init", 5), cas(0, "k", 5, "a", OK, 9, 30, 40), b.Reads["k"]},
			Versions: map[string][]Version{"k": versions(5, "init", 9, "a")}}
		h.Ops = append(h.Ops, extra...)
		for _, op := range extra {
			if op.Kind == OpCAS && (op.Outcome == OK || op.Version > 0) {
				h.Versions["k"] = append(h.Versions["k"], Version{Version: op.Version, Value: op.Value})
			}
		}
		return h
	}
	unknownApplied := func(expect uint64, value string, version uint64, call int) Op {
		op := cas(1, "k", expect, value, Unknown, 0, call, 0)
		op.Version = version // only for mk: where the final history has it
		return op
	}
	tests := []struct {
		name string
		h    History
		want string
	}{
		{"linearizable across the barrier", mk(cas(0, "k", 9, "b", OK, 12, 120, 130), read(1, "k", "b", 12, 140, 150)), ""},
		{"stale read after the barrier", mk(read(1, "k", "init", 5, 120, 130)), "segment 2 of 2"},
		{"unknown write of the first segment applied after the barrier", mk(unknownApplied(9, "u", 11, 50), read(1, "k", "u", 11, 120, 130)), ""},
		{"unknown write applied from a version an acknowledged write also used", mk(unknownApplied(5, "u", 7, 20)), "segment 1 of 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := CheckWith(tt.h, time.Minute, "")
			all := strings.Join(r.Violations, "\n")
			if tt.want == "" && len(r.Violations) > 0 {
				t.Fatalf("violations in a correct history:\n%s", all)
			}
			if tt.want != "" && !strings.Contains(all, tt.want) {
				t.Fatalf("want a violation containing %q, got:\n%s", tt.want, all)
			}
		})
	}
}
