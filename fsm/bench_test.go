package fsm

import (
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/api"
)

// benchLifecycle is the log of the scheduling benchmark (BENCHMARKS.md)
// in miniature: a ReplicaSet's pods created in entries of 500, bound in
// plans of 500 spread over the nodes, then reported Running by their
// nodes in entries of 500 status updates.
type benchLifecycle struct {
	setup, creates, binds, statuses [][]byte
}

func newBenchLifecycle(b *testing.B, nodes, pods int) *benchLifecycle {
	l := &benchLifecycle{}
	l.setup = append(l.setup, Encode(createCmd(b, namespace("ns"))))
	for i := range nodes {
		n := readyNode(fmt.Sprintf("sim-%d", i), "4", "8Gi", 110)
		n.Labels = map[string]string{"orch.dev/simulated": "true", corev1.LabelHostname: n.Name}
		l.setup = append(l.setup, Encode(createCmd(b, n)))
	}
	ctrl := true
	seconds := int64(5)
	tmpl := pod("ns", "", "bench:v1")
	tmpl.Labels = map[string]string{"app": "bench"}
	tmpl.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "bench", UID: "rs-uid", Controller: &ctrl, BlockOwnerDeletion: &ctrl}}
	tmpl.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}
	tmpl.Spec.Tolerations = []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &seconds}}
	api.Default(api.Pod, tmpl)
	all := make([]*corev1.Pod, pods)
	for i := range all {
		p := tmpl.DeepCopy()
		p.Name, p.UID = fmt.Sprintf("bench-%06d", i), types.UID(fmt.Sprintf("uid-%06d", i))
		all[i] = p
	}
	const entry = 500
	for start := 0; start < pods; start += entry {
		batch, bind, status := &Batch{}, &Bind{Time: epoch.UnixNano()}, &Batch{}
		for i := start; i < min(start+entry, pods); i++ {
			p := all[i]
			batch.Commands = append(batch.Commands, createCmd(b, p))
			node := fmt.Sprintf("sim-%d", i%nodes)
			bind.Bindings = append(bind.Bindings, Binding{Namespace: "ns", Name: p.Name, UID: string(p.UID), Node: node})
			running := p.DeepCopy()
			running.Spec.NodeName = node
			running.Status.Phase = corev1.PodRunning
			running.Status.PodIP = "198.19.0.1"
			running.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: epoch}}
			running.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", Image: "bench:v1", Ready: true,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: epoch}}}}
			status.Commands = append(status.Commands, statusCmd(b, running))
		}
		l.creates = append(l.creates, Encode(batch))
		l.binds = append(l.binds, Encode(bind))
		l.statuses = append(l.statuses, Encode(status))
	}
	return l
}

func applyEntries(b *testing.B, f *FSM, index *uint64, entries [][]byte) {
	for _, e := range entries {
		*index++
		res := f.Apply(&raft.Log{Index: *index, Type: raft.LogCommand, Data: e}).(*Result)
		for _, r := range append(res.Batch, res) {
			if r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
}

// cpuTime is the CPU time the process has used (garbage collection
// included): on a shared machine, elapsed time says more about the
// neighbours than about the code.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPodLifecycle measures the CPU time applying one pod's create,
// binding and status report costs a server (every server applies them).
func BenchmarkPodLifecycle(b *testing.B) {
	const nodes, pods = 1000, 10000
	l := newBenchLifecycle(b, nodes, pods)
	var create, bind, status int64
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		f := New(Config{})
		var index uint64
		applyEntries(b, f, &index, l.setup)
		b.StartTimer()
		for _, phase := range []struct {
			entries [][]byte
			ns      *int64
		}{{l.creates, &create}, {l.binds, &bind}, {l.statuses, &status}} {
			start := cpuTime()
			applyEntries(b, f, &index, phase.entries)
			*phase.ns += int64(cpuTime() - start)
		}
	}
	per := float64(b.N * pods)
	b.ReportMetric(float64(create)/per, "create-cpu-ns/pod")
	b.ReportMetric(float64(bind)/per, "bind-cpu-ns/pod")
	b.ReportMetric(float64(status)/per, "status-cpu-ns/pod")
	b.ReportMetric(float64(create+bind+status)/per, "cpu-ns/pod")
}

// BenchmarkConfigMapCreates measures the CPU time a server spends applying
// one 1 KB ConfigMap create of the write benchmark (BENCHMARKS.md): entries
// of 100 creates as the proposer batches them under load, each carrying a
// request ID as the Go client sends it (or none).
func BenchmarkConfigMapCreates(b *testing.B) {
	for _, withID := range []bool{true, false} {
		b.Run(fmt.Sprintf("request-ids=%v", withID), func(b *testing.B) {
			const creates, entry = 20000, 100
			value := string(make([]byte, 1024))
			var entries [][]byte
			for start := 0; start < creates; start += entry {
				batch := &Batch{}
				for i := start; i < start+entry; i++ {
					c := createCmd(b, configMap("ns", fmt.Sprintf("r1-c256-w%d-%d", i%256, i/256), map[string]string{"v": value}))
					if withID {
						c.RequestID = fmt.Sprintf("orch-bench-4f2a9c-%s", strconv.FormatUint(uint64(i+1), 36))
					}
					batch.Commands = append(batch.Commands, c)
				}
				entries = append(entries, Encode(batch))
			}
			setup := [][]byte{Encode(createCmd(b, namespace("ns")))}
			var cpu int64
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				f := New(Config{})
				var index uint64
				applyEntries(b, f, &index, setup)
				b.StartTimer()
				start := cpuTime()
				applyEntries(b, f, &index, entries)
				cpu += int64(cpuTime() - start)
			}
			b.ReportMetric(float64(cpu)/float64(b.N*creates), "cpu-ns/create")
		})
	}
}
