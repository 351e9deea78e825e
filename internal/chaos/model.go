package chaos

import (
	"fmt"
	"hash/fnv"

	"github.com/anishathalye/porcupine"
)

// The porcupine model: every key is an independent versioned register. A
// read returns the value and version; a compare-and-set writes a value if
// the current version is the one it names, and the new version is larger.
// Versions are Raft indexes, which the model cannot predict: an
// acknowledged write's response tells it. A write whose outcome is unknown
// may or may not take effect (the model is nondeterministic); when it
// takes effect its version is unknown until a read reveals it.

type regInput struct {
	Kind   OpKind
	Key    string
	Expect uint64 // CAS
	Value  string // CAS, create
}

type regOutput struct {
	Outcome Outcome
	Value   string // read
	Version uint64 // read; acknowledged write when VersionKnown
	// VersionKnown is false for an acknowledged write whose version could
	// not be established.
	VersionKnown bool
}

type regState struct {
	Exists  bool
	Value   string
	Version uint64 // when Known
	Known   bool
	Floor   uint64 // when !Known: the version is larger than this
}

func (s regState) String() string {
	switch {
	case !s.Exists:
		return "absent"
	case s.Known:
		return fmt.Sprintf("%s@%d", s.Value, s.Version)
	default:
		return fmt.Sprintf("%s@>%d", s.Value, s.Floor)
	}
}

// casMatches reports whether a CAS conditional on expect can apply to s.
func casMatches(s regState, expect uint64) bool {
	if !s.Exists {
		return false
	}
	if s.Known {
		return s.Version == expect
	}
	return expect > s.Floor
}

func regStep(state, input, output any) []any {
	s, in, out := state.(regState), input.(regInput), output.(regOutput)
	switch in.Kind {
	case OpCreate:
		if s.Exists {
			return nil
		}
		return []any{regState{Exists: true, Value: in.Value, Version: out.Version, Known: true}}
	case OpRead:
		if !s.Exists || out.Value != s.Value {
			return nil
		}
		if s.Known {
			if out.Version != s.Version {
				return nil
			}
			return []any{s}
		}
		if out.Version <= s.Floor {
			return nil
		}
		return []any{regState{Exists: true, Value: s.Value, Version: out.Version, Known: true}}
	case OpCAS:
		matches := casMatches(s, in.Expect)
		applied := regState{Exists: true, Value: in.Value, Floor: in.Expect}
		switch out.Outcome {
		case OK:
			if !matches {
				return nil
			}
			if out.VersionKnown {
				if out.Version <= in.Expect {
					return nil
				}
				applied.Version, applied.Known, applied.Floor = out.Version, true, 0
			}
			return []any{applied}
		case Conflict:
			if s.Exists && s.Known && s.Version == in.Expect {
				return nil // the version matched: the update had to apply
			}
			return []any{s}
		case Failed:
			return []any{s}
		default: // Unknown: not applied (or never executed), or applied here
			if matches {
				return []any{s, applied}
			}
			return []any{s}
		}
	}
	return nil
}

// RegisterModel is the porcupine model of the ConfigMap registers.
var RegisterModel = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string]int{}
		var out [][]porcupine.Operation
		for _, op := range history {
			k := op.Input.(regInput).Key
			i, ok := byKey[k]
			if !ok {
				i = len(out)
				byKey[k] = i
				out = append(out, nil)
			}
			out[i] = append(out[i], op)
		}
		return out
	},
	Init: func() []any { return []any{regState{}} },
	Step: regStep,
	Equal: func(a, b any) bool {
		return a.(regState) == b.(regState)
	},
	Hash: func(state any) uint64 {
		s := state.(regState)
		h := fnv.New64a()
		fmt.Fprintf(h, "%t|%s|%d|%t|%d", s.Exists, s.Value, s.Version, s.Known, s.Floor)
		return h.Sum64()
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(regInput), output.(regOutput)
		switch in.Kind {
		case OpCreate:
			return fmt.Sprintf("create %s=%s -> @%d", in.Key, in.Value, out.Version)
		case OpRead:
			return fmt.Sprintf("read %s -> %s@%d", in.Key, out.Value, out.Version)
		default:
			s := fmt.Sprintf("cas %s if @%d set %s -> %s", in.Key, in.Expect, in.Value, out.Outcome)
			if out.Outcome == OK && out.VersionKnown {
				s += fmt.Sprintf(" @%d", out.Version)
			}
			return s
		}
	},
	DescribeState: func(state any) string {
		return state.(regState).String()
	},
}
