package sched

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// benchCluster is nodes like `orchd simulate`'s (4 cpu, 8Gi, 110 pods) in
// 3 zones.
func benchCluster(nodes int) []*corev1.Node {
	out := make([]*corev1.Node, nodes)
	for i := range out {
		out[i] = node(fmt.Sprintf("sim-%d", i), "4", "8Gi", 110, map[string]string{corev1.LabelTopologyZone: fmt.Sprintf("zone-%d", i%3)})
	}
	return out
}

// benchPods are small pods of 100 ReplicaSets (so default spreading works).
func benchPods(n int) []*PodInfo {
	out := make([]*PodInfo, n)
	for i := range out {
		p := pod("default", fmt.Sprintf("p-%d", i), "50m", "64Mi", 0)
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs",
			UID: types.UID(fmt.Sprintf("rs-%d", i%100)), Controller: new(true)}}
		out[i] = NewPodInfo(p)
	}
	return out
}

// benchSchedule measures Schedule per pod, in plans of 1000 pods, on a
// cluster that fills up to `fill` pods (then starts again).
func benchSchedule(b *testing.B, nodes, fill int) {
	cluster := benchCluster(nodes)
	pods := benchPods(fill)
	snap := NewSnapshot(cluster, nil, nil)
	next := 0
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		if next >= len(pods) {
			b.StopTimer()
			snap, next = NewSnapshot(cluster, nil, nil), 0
			b.StartTimer()
		}
		n := min(1000, b.N-done, len(pods)-next)
		plan := Schedule(snap, pods[next:next+n], Options{Seed: uint64(done)})
		if len(plan.Bindings) != n {
			b.Fatalf("%d of %d bound: %v", len(plan.Bindings), n, plan.Unschedulable[0].Message)
		}
		next += n
		done += n
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pod")
}

func BenchmarkSchedule1kNodes30kPods(b *testing.B) { benchSchedule(b, 1000, 30000) }
func BenchmarkSchedule5kNodes50kPods(b *testing.B) { benchSchedule(b, 5000, 50000) }
