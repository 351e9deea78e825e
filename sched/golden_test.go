package sched

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/api"
)

var update = flag.Bool("update", false, "rewrite the golden plans in testdata/sched")

// scenario is one testdata/sched manifest: nodes, namespaces, bound pods
// (spec.nodeName set) and pending pods.
type scenario struct {
	nodes      []*corev1.Node
	namespaces []*corev1.Namespace
	bound      []*corev1.Pod
	pending    []*corev1.Pod
}

func loadScenario(t *testing.T, path string) scenario {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := api.DecodeManifests(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var s scenario
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Node:
			s.nodes = append(s.nodes, o)
		case *corev1.Namespace:
			s.namespaces = append(s.namespaces, o)
		case *corev1.Pod:
			if o.Namespace == "" {
				o.Namespace = "default"
			}
			if o.UID == "" {
				o.UID = types.UID("uid-" + o.Namespace + "-" + o.Name)
			}
			if o.Spec.NodeName != "" {
				s.bound = append(s.bound, o)
			} else {
				s.pending = append(s.pending, o)
			}
		default:
			t.Fatalf("%s: unexpected %T", path, o)
		}
	}
	return s
}

// planText renders a plan in the order the pods were scheduled.
func planText(order []*PodInfo, plan Plan) string {
	bound := map[string]string{}
	for _, b := range plan.Bindings {
		bound[b.Namespace+"/"+b.Name] = b.Node
	}
	why := map[string]string{}
	for _, u := range plan.Unschedulable {
		why[u.Pod.Key] = u.Message
	}
	preempt := map[string]Preemption{}
	for _, p := range plan.Preemptions {
		preempt[p.Pod.Key] = p
	}
	var b strings.Builder
	for _, p := range order {
		if n, ok := bound[p.Key]; ok {
			fmt.Fprintf(&b, "bind %s -> %s\n", p.Key, n)
			continue
		}
		fmt.Fprintf(&b, "unschedulable %s: %s\n", p.Key, why[p.Key])
		if pr, ok := preempt[p.Key]; ok {
			var victims []string
			for _, v := range pr.Victims {
				victims = append(victims, v.Key)
			}
			fmt.Fprintf(&b, "  preempt on %s: %s\n", pr.Node, strings.Join(victims, ", "))
		}
	}
	return b.String()
}

// TestGoldenPlans schedules each testdata/sched scenario (pending pods in
// queue order) and compares the plan with its .golden file.
func TestGoldenPlans(t *testing.T) {
	files, err := filepath.Glob("../testdata/sched/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			s := loadScenario(t, path)
			snap := NewSnapshot(s.nodes, s.bound, s.namespaces)
			q := NewQueue()
			for _, p := range s.pending {
				q.Add(NewPodInfo(p), false)
			}
			order := q.Pop(len(s.pending))
			plan := Schedule(snap, order, Options{Seed: 1})
			got := planText(order, plan)
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./sched -update)", err)
			}
			if got != string(want) {
				t.Errorf("plan of %s differs from %s:\n--- got\n%s--- want\n%s", path, golden, got, want)
			}
			checkPlan(t, snap, plan)
		})
	}
}
