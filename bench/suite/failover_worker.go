package suite

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
)

// WorkerDeathResult is one run's worker deaths: for each, the time from
// the kill -9 of a simulator (all its nodes die at once) until every pod
// of the Deployment that ran there is Running and Ready on the other
// simulator's nodes.
type WorkerDeathResult struct {
	Run      int       `json:"run"`
	Deaths   int       `json:"deaths"`
	Replicas int       `json:"replicas"`
	Nodes    int       `json:"nodes_per_simulator"`
	Samples  []float64 `json:"samples_s"`
	P50Secs  float64   `json:"p50_s"`
	MaxSecs  float64   `json:"max_s"`
	LoadAvg  float64   `json:"loadavg_1m"`
}

// workerDeaths runs the worker-death measurement on a fresh cluster c.
func workerDeaths(env *Env, c *testcluster.Cluster, deaths, replicas int, progress func(string)) WorkerDeathResult {
	const nodes = 2
	r := WorkerDeathResult{Deaths: deaths, Replicas: replicas, Nodes: nodes}
	cl := OrchClient(env, c)
	ctx := context.Background()
	if err := CreateNamespace(ctx, cl, FailoverNamespace); err != nil {
		env.Fatal(err)
	}
	var lat Latencies
	for i := 1; i <= deaths; i++ {
		doomed, spare := fmt.Sprintf("d%da-", i), fmt.Sprintf("d%db-", i)
		a := c.Simulate(nodes, "--prefix", doomed)
		waitNodes(env, cl, doomed, nodes)
		name := fmt.Sprintf("web-%d", i)
		if _, err := cl.Create(ctx, failoverDeployment(name, replicas)); err != nil {
			env.Fatal(err)
		}
		waitPods(env, cl, name, doomed, replicas, time.Minute)
		b := c.Simulate(nodes, "--prefix", spare)
		waitNodes(env, cl, spare, nodes)
		killed := time.Now()
		a.Kill()
		took := waitPods(env, cl, name, spare, replicas, 2*time.Minute).Sub(killed)
		lat = append(lat, took)
		r.Samples = append(r.Samples, took.Seconds())
		progress(fmt.Sprintf("worker death %d: %d pods Running on the other nodes %.1f s after the kill", i, replicas, took.Seconds()))
		// Clean up for the next round: the survivors leave (deregistering
		// their nodes), the dead nodes are deleted.
		if err := cl.Delete(ctx, api.Deployment, FailoverNamespace, name, client.DeleteOptions{}); err != nil {
			env.Fatal(err)
		}
		b.Stop()
		for j := range nodes {
			cl.Delete(ctx, api.Node, "", fmt.Sprintf("%s%d", doomed, j), client.DeleteOptions{})
		}
	}
	r.P50Secs, r.MaxSecs = lat.Percentile(50).Seconds(), lat.Percentile(100).Seconds()
	r.LoadAvg = LoadAvg()
	return r
}

func failoverDeployment(name string, replicas int) *appsv1.Deployment {
	n := int32(replicas)
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Namespace: FailoverNamespace, Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: &n, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: benchPodSpec()}}}
}

// waitNodes waits until the n nodes named prefix0.. are Ready.
func waitNodes(env *Env, cl *client.Client, prefix string, n int) {
	deadline := time.Now().Add(time.Minute)
	for {
		l, err := cl.List(context.Background(), api.Node, "", client.ListOptions{LabelSelector: "orch.dev/simulated=true"})
		ready := 0
		if err == nil {
			for _, o := range l.Items {
				if node := o.(*corev1.Node); strings.HasPrefix(node.Name, prefix) && testcluster.NodeReady(node) {
					ready++
				}
			}
		}
		if ready == n {
			return
		}
		if time.Now().After(deadline) {
			env.Fatalf("%d of %d nodes %s* Ready after a minute (%v)", ready, n, prefix, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}

// waitPods polls (every 50 ms) until the Deployment's pods are exactly n,
// none being deleted, all Running and Ready on nodes named prefix*, and
// returns when it saw that.
func waitPods(env *Env, cl *client.Client, app, prefix string, n int, timeout time.Duration) time.Time {
	deadline := time.Now().Add(timeout)
	for {
		l, err := cl.List(context.Background(), api.Pod, FailoverNamespace, client.ListOptions{LabelSelector: "app=" + app})
		if err == nil {
			good := 0
			for _, o := range l.Items {
				p := o.(*corev1.Pod)
				if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && podIsReady(p) && strings.HasPrefix(p.Spec.NodeName, prefix) {
					good++
				}
			}
			if good == n {
				return time.Now()
			}
		}
		if time.Now().After(deadline) {
			env.Fatalf("the pods of %s were not all Running on %s* nodes within %s (%v)", app, prefix, timeout, err)
		}
		time.Sleep(50 * time.Millisecond) // polling interval
	}
}
