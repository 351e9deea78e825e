package runtime_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"orch.dev/orch/node/runtime"
)

// BenchmarkPodStart measures what the runtime itself costs to start a pod
// whose image is present: CreateSandbox (network namespace, CNI bridge and
// host-local IPAM, the pod's files) then CreateContainer and
// StartContainer of one container (snapshot, spec, runc create and start),
// one pod at a time. Stopping and removing each pod is not timed. Besides
// ns/op it reports the median, 90th percentile, min and max of the whole
// start and the median of each step (sandbox, container create, container
// start), over b.N pods:
//
//	go test -run '^$' -bench PodStart -benchtime 20x ./node/runtime/
func BenchmarkPodStart(b *testing.B) {
	e := newEnv(b)
	e.importImages("web")
	ctx := context.Background()
	var total, sandbox, create, starts []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		sb, err := e.rt.CreateSandbox(ctx, runtime.SandboxConfig{Name: "bench", Namespace: "default", UID: "uid-bench"})
		if err != nil {
			b.Fatal(err)
		}
		created := time.Now()
		id, err := e.rt.CreateContainer(ctx, sb.ID, runtime.ContainerConfig{Name: "web", Image: img("web"), Attempt: i})
		if err != nil {
			b.Fatal(err)
		}
		ctrCreated := time.Now()
		if err := e.rt.StartContainer(ctx, id); err != nil {
			b.Fatal(err)
		}
		end := time.Now()
		total, sandbox = append(total, end.Sub(start)), append(sandbox, created.Sub(start))
		create, starts = append(create, ctrCreated.Sub(created)), append(starts, end.Sub(ctrCreated))

		b.StopTimer()
		if err := e.rt.StopContainer(ctx, id, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		if err := e.rt.RemoveContainer(ctx, id); err != nil {
			b.Fatal(err)
		}
		if err := e.rt.RemoveSandbox(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	q := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[int(p*float64(len(s)-1)+0.5)]
	}
	b.ReportMetric(ms(q(total, 0.5)), "p50-ms")
	b.ReportMetric(ms(q(total, 0.9)), "p90-ms")
	b.ReportMetric(ms(q(total, 0)), "min-ms")
	b.ReportMetric(ms(q(total, 1)), "max-ms")
	b.ReportMetric(ms(q(sandbox, 0.5)), "sandbox-p50-ms")
	b.ReportMetric(ms(q(create, 0.5)), "create-p50-ms")
	b.ReportMetric(ms(q(starts, 0.5)), "start-p50-ms")
}
