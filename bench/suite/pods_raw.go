package suite

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
)

// rawBurst is the pods suite's peer: the same n containers of the web test
// image started at once straight through containerd's Go client and runc,
// with no orchestrator, no CNI and no status reporting, each timed from
// before NewContainer to task.Start's return (as `ctr run -d` would).
// It is the floor of a burst on this machine: what containerd, its shims
// and runc alone cost. Each container gets runc's fresh network namespace
// (loopback only).
func rawBurst(env *Env, pc *podsCluster, run, n int) PodsResult {
	ctx := context.Background()
	cl, err := containerd.New(pc.sock, containerd.WithDefaultNamespace("bench"))
	if err != nil {
		env.Fatal(err)
	}
	defer cl.Close()
	img, err := cl.GetImage(ctx, "orch.test/web:v1")
	if err != nil {
		env.Fatal(err)
	}
	lat := make(Latencies, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	cpu0, t0 := pc.cpu(), time.Now()
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("raw-%d-%03d", run, i)
			start := time.Now()
			ctr, err := cl.NewContainer(ctx, id,
				containerd.WithImage(img),
				containerd.WithNewSnapshot(id, img),
				containerd.WithNewSpec(oci.WithImageConfig(img)))
			if err != nil {
				errs[i] = err
				return
			}
			task, err := ctr.NewTask(ctx, cio.NullIO)
			if err == nil {
				err = task.Start(ctx)
			}
			lat[i] = time.Since(start)
			errs[i] = err
		}()
	}
	wg.Wait()
	cpu1, elapsed := pc.cpu(), time.Since(t0)
	removeRaw(cl, run, n)
	for _, err := range errs {
		if err != nil {
			env.Fatalf("raw containerd start: %v", err)
		}
	}
	perPod := podCPUDelta(cpu0, cpu1)
	for k, v := range perPod {
		perPod[k] = v * 1000 / float64(n)
	}
	return PodsResult{Run: run, Mode: fmt.Sprintf("%d at once, containerd + runc alone (peer)", n), Pods: n,
		P50Ms: Ms(lat.Percentile(50)), P99Ms: Ms(lat.Percentile(99)), MaxMs: Ms(lat.Percentile(100)),
		LoadAvg: LoadAvg(), CPUMsPerPod: perPod, Seconds: elapsed.Seconds()}
}

// removeRaw kills and deletes rawBurst's containers with their snapshots.
func removeRaw(cl *containerd.Client, run, n int) {
	ctx := context.Background()
	for i := range n {
		ctr, err := cl.LoadContainer(ctx, fmt.Sprintf("raw-%d-%03d", run, i))
		if err != nil {
			continue
		}
		if task, err := ctr.Task(ctx, nil); err == nil {
			if exited, err := task.Wait(ctx); err == nil {
				task.Kill(ctx, syscall.SIGKILL)
				<-exited
			}
			task.Delete(ctx)
		}
		ctr.Delete(ctx, containerd.WithSnapshotCleanup)
	}
}
