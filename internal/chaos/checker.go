package chaos

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Result is what Check found in a history.
type Result struct {
	Ops, Reads, Writes, Acked, Conflicts, Unknown, Failed int
	// Unknown or failed writes the change stream shows applied, and not.
	ResolvedApplied, ResolvedNotApplied int
	// Linearizable is porcupine's verdict: "ok", "illegal" or "timeout".
	Linearizable string
	// Visualization is porcupine's HTML rendering of an illegal history.
	Visualization string
	// LostWrites are acknowledged writes missing from the final history.
	LostWrites []string
	// Violations describes every property that broke (empty: all held).
	Violations []string
}

// Check verifies a workload's history: linearizability of every register
// (porcupine) and that the final history holds every acknowledged write,
// at the version its response gave and in order, and no write that was
// refused. A write whose outcome the client never learnt is resolved with
// the final history when that history is complete: applied at the version
// the history shows (its response time unbounded), or never applied (then
// it is left out: an operation without effect or answer constrains
// nothing). A porcupine search longer than timeout is a failure too.
// An illegal history's visualization is written to the temporary directory.
func Check(h History, timeout time.Duration) Result { return CheckWith(h, timeout, os.TempDir()) }

// CheckWith is Check writing the visualization into dir ("" for none).
func CheckWith(h History, timeout time.Duration, dir string) Result {
	var r Result
	complete := h.Gap == ""
	if !complete {
		r.Violations = append(r.Violations, "the final history is incomplete: "+h.Gap)
	}
	// Where each value sits in the final history.
	at := map[string]map[string]uint64{}
	for k, vs := range h.Versions {
		at[k] = map[string]uint64{}
		for _, v := range vs {
			at[k][v.Value] = v.Version
		}
	}
	written := map[string]map[string]Op{}
	var entries []porcupine.Operation
	for _, op := range h.Ops {
		r.Ops++
		in := regInput{Kind: op.Kind, Key: op.Key, Expect: op.Expect, Value: op.Value}
		out := regOutput{Outcome: op.Outcome, Value: op.Value, Version: op.Version, VersionKnown: true}
		ret := int64(op.Return)
		if op.Kind == OpRead {
			r.Reads++
			entries = append(entries, porcupine.Operation{ClientId: op.Client + 2, Input: in, Output: out, Call: int64(op.Call), Return: ret, Metadata: op})
			continue
		}
		r.Writes++
		if written[op.Key] == nil {
			written[op.Key] = map[string]Op{}
		}
		written[op.Key][op.Value] = op
		ver, inHistory := at[op.Key][op.Value]
		switch op.Outcome {
		case OK:
			r.Acked++
			if !inHistory && complete {
				r.LostWrites = append(r.LostWrites, op.String())
			}
			if op.RespValue != op.Value {
				where := "absent from the final history"
				if inHistory {
					where = fmt.Sprintf("applied at @%d per the final history", ver)
				}
				r.Violations = append(r.Violations, fmt.Sprintf("an acknowledged write's response describes another write: %s; %s was %s",
					op, op.Value, where))
				out.Version, out.VersionKnown = ver, inHistory
			} else if inHistory && ver != op.Version {
				r.Violations = append(r.Violations, fmt.Sprintf("acknowledged at version %d, but the final history has it at %d: %s", op.Version, ver, op))
			}
		case Conflict:
			r.Conflicts++
		case Unknown, Failed:
			if op.Outcome == Failed {
				r.Failed++
				r.Violations = append(r.Violations, "unexpected refusal: "+op.String())
			} else {
				r.Unknown++
			}
			ret = math.MaxInt64
			switch {
			case inHistory:
				r.ResolvedApplied++
				out = regOutput{Outcome: OK, Version: ver, VersionKnown: true}
			case complete:
				r.ResolvedNotApplied++
				continue
			}
		}
		entries = append(entries, porcupine.Operation{ClientId: op.Client + 2, Input: in, Output: out, Call: int64(op.Call), Return: ret, Metadata: op})
	}
	for _, lw := range r.LostWrites {
		r.Violations = append(r.Violations, "acknowledged write lost: "+lw)
	}
	// Every version in the final history was written by a client, and not
	// by a write the servers refused.
	for _, k := range sortedKeys(h.Versions) {
		for _, v := range h.Versions[k] {
			op, ok := written[k][v.Value]
			switch {
			case !ok:
				r.Violations = append(r.Violations, fmt.Sprintf("%s@%d in the final history was written by no client: %q", k, v.Version, v.Value))
			case op.Outcome == Conflict:
				r.Violations = append(r.Violations, fmt.Sprintf("a write refused with 409 was applied at version %d: %s", v.Version, op))
			}
		}
	}
	r.Linearizable = "ok"
	model := RegisterModel.ToModel()
	deadline := time.Now().Add(timeout)
	segs := segments(entries, h.Barriers)
	for i, seg := range segs {
		res, info := porcupine.CheckOperationsVerbose(model, seg, max(time.Until(deadline), time.Second))
		where := ""
		if len(segs) > 1 {
			where = fmt.Sprintf(" (segment %d of %d, %s)", i+1, len(segs), segmentSpan(h.Barriers, i))
		}
		switch res {
		case porcupine.Illegal:
			r.Linearizable = "illegal"
			r.Violations = append(r.Violations, "not linearizable"+where+":\n"+excerpt(seg, info))
			if dir != "" && r.Visualization == "" {
				path := filepath.Join(dir, fmt.Sprintf("orch-chaos-history-%s.html", time.Now().Format("20060102-150405.000")))
				if err := porcupine.VisualizePath(model, info, path); err == nil {
					r.Visualization = path
				}
			}
		case porcupine.Unknown:
			if r.Linearizable == "ok" {
				r.Linearizable = "timeout"
			}
			r.Violations = append(r.Violations, fmt.Sprintf("the linearizability check did not finish within %s%s", timeout, where))
		}
	}
	return r
}

// segments splits the operations at the barriers. An operation belongs to
// the segment it was invoked in, except an unknown write the final history
// shows applied: it belongs to the segment whose closing barrier read is
// the first to see its version, and it returned by that read's return (its
// effect cannot be later); one that no barrier read saw stays open. Each
// segment after the first starts from its opening barrier's reads.
func segments(ops []porcupine.Operation, bs []Barrier) [][]porcupine.Operation {
	segs := make([][]porcupine.Operation, len(bs)+1)
	for j, b := range bs {
		for _, k := range sortedKeys(b.Reads) {
			rd := b.Reads[k]
			init := Op{Client: -1, Kind: OpCreate, Key: k, Value: rd.Value, RespValue: rd.Value, Version: rd.Version, Outcome: OK,
				Call: b.End - 2, Return: b.End - 1}
			segs[j+1] = append(segs[j+1], porcupine.Operation{ClientId: 1, Input: regInput{Kind: OpCreate, Key: k, Value: rd.Value},
				Output: regOutput{Outcome: OK, Version: rd.Version, VersionKnown: true}, Call: int64(init.Call), Return: int64(init.Return), Metadata: init})
		}
	}
	for _, op := range ops {
		orig := op.Metadata.(Op)
		j := 0
		for _, b := range bs {
			if b.End <= orig.Call {
				j++
			}
		}
		if op.Return == math.MaxInt64 && op.Output.(regOutput).Outcome == OK {
			v, key := op.Output.(regOutput).Version, orig.Key
			first := j
			for j < len(bs) && v > bs[j].Reads[key].Version {
				j++
			}
			if j > first {
				op.Call = int64(bs[j-1].End)
			}
			if j < len(bs) {
				op.Return = int64(bs[j].Reads[key].Return)
			}
		}
		segs[j] = append(segs[j], op)
	}
	return segs
}

func segmentSpan(bs []Barrier, i int) string {
	from, to := "the start", "the end"
	if i > 0 {
		from = fmt.Sprintf("%.3fs", bs[i-1].End.Seconds())
	}
	if i < len(bs) {
		to = fmt.Sprintf("%.3fs", bs[i].Start.Seconds())
	}
	return "from " + from + " to " + to
}

func sortedKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// excerpt shows, for each register whose history is not linearizable, the
// end of the longest linearizable prefix porcupine found and the
// operations around the first one it could not place.
func excerpt(ops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	parts := RegisterModel.Partition(ops)
	partials := info.PartialLinearizationsOperations()
	var b strings.Builder
	for i, part := range parts {
		if i >= len(partials) {
			break
		}
		var longest []porcupine.Operation
		for _, p := range partials[i] {
			if len(p) > len(longest) {
				longest = p
			}
		}
		if len(longest) == len(part) {
			continue
		}
		placed := map[int64]map[int]bool{}
		for _, op := range longest {
			if placed[op.Call] == nil {
				placed[op.Call] = map[int]bool{}
			}
			placed[op.Call][op.ClientId] = true
		}
		sorted := append([]porcupine.Operation(nil), part...)
		sort.SliceStable(sorted, func(a, c int) bool { return sorted[a].Call < sorted[c].Call })
		first := -1
		for j, op := range sorted {
			if !placed[op.Call][op.ClientId] {
				first = j
				break
			}
		}
		key := part[0].Input.(regInput).Key
		fmt.Fprintf(&b, "register %s: %d operations, the longest linearizable prefix has %d; its last operations:\n", key, len(part), len(longest))
		for _, op := range longest[max(0, len(longest)-5):] {
			fmt.Fprintf(&b, "    %s\n", op.Metadata.(Op))
		}
		if first >= 0 {
			fmt.Fprintf(&b, "  operations around the first that could not be placed (marked >>):\n")
			for j := max(0, first-8); j < min(len(sorted), first+8); j++ {
				mark := "  "
				if j == first {
					mark = ">>"
				}
				fmt.Fprintf(&b, "  %s %s\n", mark, sorted[j].Metadata.(Op))
			}
		}
	}
	return b.String()
}
