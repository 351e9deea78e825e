package conformance

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/proxy"
)

func writeIfExists(path, v string) error {
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	return os.WriteFile(path, []byte(v), 0o644)
}

var (
	web     = fmt.Sprintf("%s:80", vip)
	webUDP  = fmt.Sprintf("%s:53", vip)
	extNP   = fmt.Sprintf("%s:%d", nodeExtIP, nodePort)
	innerNP = fmt.Sprintf("%s:%d", nodeBridge, nodePort)
)

// run runs every scenario on a fresh network with kind's backend.
func run(t *testing.T, kind backendKind) {
	for _, sc := range []struct {
		name string
		fn   func(*testing.T, *cluster)
	}{
		{"SplitsBetweenEndpoints", testSplit},
		{"NotReadyGetsNothing", testNotReady},
		{"RemovedEndpointDrainsThenGoes", testRemoved},
		{"DeletedServiceLeavesNoRule", testDeleted},
		{"RestartKeepsTrafficAndRemovesStale", testRestart},
		{"ClientIPAffinitySticks", testAffinity},
		{"HairpinIsMasqueraded", testHairpin},
		{"NoEndpointsRefusedFast", testNoEndpoints},
		{"DriftRepairedWhileRunning", testDrift},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.fn(t, newCluster(t, kind)) })
	}
}

func checkSplit(t *testing.T, c *cluster, what string, counts map[string]int, n int, want ...string) {
	t.Helper()
	total := 0
	for name, k := range counts {
		total += k
		ok := false
		for _, w := range want {
			ok = ok || w == name
		}
		if !ok {
			t.Errorf("%s: %d connections went to %s, want only %v (%v)", what, k, name, want, counts)
		}
	}
	for _, w := range want {
		switch {
		case counts[w] == 0:
			t.Errorf("%s: no connection went to %s (%v)", what, w, counts)
		case c.kind.exactSplit && !strings.Contains(what, "udp") && counts[w] != n/len(want):
			// (IPVS keeps UDP "connections" by client port, and a reused
			// ephemeral port goes where it went before: exact for TCP only.)
			t.Errorf("%s: round robin gave %v, want %d each", what, counts, n/len(want))
		}
	}
	if total != n {
		t.Errorf("%s: %d answers for %d connections", what, total, n)
	}
}

// testSplit: new connections to a service with 2 ready endpoints go to
// both, over TCP and UDP, from a pod, from the node itself and through the
// NodePort; the client address is kept in the cluster and masqueraded for
// NodePort traffic from outside it.
func testSplit(t *testing.T, c *cluster) {
	c.start(t, []*corev1.Service{service("web", vip, false)}, []*corev1.Endpoints{endpoints("web", []int{1, 2}, nil)})
	counts, peers := hits(t, c.client, "tcp", web, 40)
	checkSplit(t, c, "tcp from pod", counts, 40, "p1", "p2")
	if len(peers) != 1 || !peers[clientIP] {
		t.Errorf("endpoints saw clients %v, want the pod's own address %s", peers, clientIP)
	}
	counts, _ = hits(t, c.client, "udp", webUDP, 40)
	checkSplit(t, c, "udp from pod", counts, 40, "p1", "p2")
	counts, _ = hits(t, c.node, "tcp", web, 20)
	checkSplit(t, c, "tcp from node", counts, 20, "p1", "p2")
	counts, peers = hits(t, c.ext, "tcp", extNP, 20)
	checkSplit(t, c, "nodeport from outside", counts, 20, "p1", "p2")
	if len(peers) != 1 || !peers[nodeBridge] {
		t.Errorf("nodeport from outside: endpoints saw %v, want masqueraded to %s", peers, nodeBridge)
	}
	counts, peers = hits(t, c.client, "tcp", innerNP, 20)
	checkSplit(t, c, "nodeport from pod", counts, 20, "p1", "p2")
	if len(peers) != 1 || !peers[clientIP] {
		t.Errorf("nodeport from pod: endpoints saw %v, want %s (no masquerade inside the cluster CIDR)", peers, clientIP)
	}
}

// testNotReady: a not-ready address gets no connection; once ready it does.
func testNotReady(t *testing.T, c *cluster) {
	p, _ := c.start(t, []*corev1.Service{service("web", vip, false)}, []*corev1.Endpoints{endpoints("web", []int{1, 2}, []int{3})})
	counts, _ := hits(t, c.client, "tcp", web, 30)
	checkSplit(t, c, "with p3 not ready", counts, 30, "p1", "p2")
	counts, _ = hits(t, c.client, "udp", webUDP, 30)
	checkSplit(t, c, "udp with p3 not ready", counts, 30, "p1", "p2")
	p.OnEndpoints(endpoints("web", []int{1, 2, 3}, nil))
	syncNow(t, p)
	counts, _ = hits(t, c.client, "tcp", web, 30)
	checkSplit(t, c, "with p3 ready", counts, 30, "p1", "p2", "p3")
}

// testRemoved: a removed endpoint first drains (weight 0: no new
// connections, its rules still there), and after the drain timeout is gone
// from the kernel.
func testRemoved(t *testing.T, c *cluster) {
	p, b := c.start(t, []*corev1.Service{service("web", vip, false)}, []*corev1.Endpoints{endpoints("web", []int{1, 2}, nil)})
	p.OnEndpoints(endpoints("web", []int{1}, nil))
	syncNow(t, p)
	key := proxy.Key{Addr: netip.MustParseAddr(vip), Proto: proxy.TCP, Port: 80}
	p2 := netip.MustParseAddrPort(fmt.Sprintf("%s:%d", podIP(2), podPort))
	kernel, err := b.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := kernel[key].Endpoint(p2); !ok || e.Weight != 0 {
		t.Errorf("while draining, the kernel has p2 as %+v (present %v), want weight 0", e, ok)
	}
	counts, _ := hits(t, c.client, "tcp", web, 30)
	checkSplit(t, c, "p2 draining", counts, 30, "p1")
	counts, _ = hits(t, c.client, "udp", webUDP, 30)
	checkSplit(t, c, "udp, p2 draining", counts, 30, "p1")

	c.clock.Advance(11 * time.Second)
	syncNow(t, p)
	if kernel, err = b.Read(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := kernel[key].Endpoint(p2); ok {
		t.Errorf("after the drain timeout the kernel still has p2: %s", kernel[key])
	}
	counts, _ = hits(t, c.client, "tcp", web, 30)
	checkSplit(t, c, "p2 removed", counts, 30, "p1")
}

// testDeleted: deleting the service removes every rule for it.
func testDeleted(t *testing.T, c *cluster) {
	p, b := c.start(t, []*corev1.Service{service("web", vip, true)}, []*corev1.Endpoints{endpoints("web", []int{1, 2}, nil)})
	hits(t, c.client, "tcp", web, 4)
	p.OnServiceDelete("default", "web")
	p.OnEndpointsDelete("default", "web")
	syncNow(t, p)
	kernel, err := b.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(kernel) != 0 {
		t.Errorf("kernel still has\n%s", kernel)
	}
	if left := c.kind.leftovers(t, c); len(left) > 0 {
		t.Errorf("left behind: %v", left)
	}
	for _, target := range []string{web, extNP} {
		if r, err := c.client.Dial("tcp", target, time.Second); err == nil {
			t.Errorf("%s still answered by %s after the service was deleted", target, r.Name)
		}
	}
	c.alive(t)
}

// testRestart: a new proxy (new backend instance, empty memory) takes over
// from the kernel: a service it still wants keeps answering throughout,
// untouched, and one deleted while no proxy ran is removed.
func testRestart(t *testing.T, c *cluster) {
	svcs := []*corev1.Service{service("web", vip, false), service("old", vip2, false)}
	svcs[1].Spec.Type, svcs[1].Spec.Ports[0].NodePort = corev1.ServiceTypeClusterIP, 0
	eps := []*corev1.Endpoints{endpoints("web", []int{1, 2}, nil), endpoints("old", []int{3}, nil)}
	_, b1 := c.start(t, svcs, eps)
	if r, err := c.client.Dial("tcp", vip2+":80", 2*time.Second); err != nil || r.Name != "p3" {
		t.Fatalf("old service before restart: %v %v", r, err)
	}
	if cl, ok := b1.(interface{ Close() error }); ok {
		cl.Close() // the first proxy exits, leaving its rules
	}

	var ok, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.client.Dial("tcp", web, time.Second); err != nil {
				failed.Add(1)
			} else {
				ok.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(50 * time.Millisecond)

	p, b := c.proxier(t)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	p.ReplaceServices(svcs[:1])
	p.ReplaceEndpoints(eps[:1])
	deadline := time.Now().Add(10 * time.Second)
	for p.Stats().Syncs == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	<-done
	cancel()
	<-runDone

	st := p.Stats()
	if st.Syncs == 0 {
		t.Fatalf("new proxy never synced: %+v", st)
	}
	if failed.Load() > 0 || ok.Load() == 0 {
		t.Errorf("during the restart %d connections failed, %d succeeded", failed.Load(), ok.Load())
	}
	// Only the stale service changed: web's virtual servers were untouched.
	if st.Changes != 2 {
		t.Errorf("restart made %d changes, want 2 (old's TCP and UDP virtual servers)", st.Changes)
	}
	kernel, err := b.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !kernel.Equal(p.Applied()) {
		t.Errorf("kernel\n%s\ndiffers from what the proxy applied\n%s", kernel, p.Applied())
	}
	for k := range kernel {
		if k.Addr.String() == vip2 {
			t.Errorf("stale virtual server %s still in the kernel", k)
		}
	}
	if r, err := c.client.Dial("tcp", vip2+":80", time.Second); err == nil {
		t.Errorf("deleted service still answered by %s", r.Name)
	}
	c.alive(t)
}

// testAffinity: with ClientIP affinity every connection from one client
// goes to one endpoint; when that endpoint is removed the client moves.
func testAffinity(t *testing.T, c *cluster) {
	p, _ := c.start(t, []*corev1.Service{service("web", vip, true)}, []*corev1.Endpoints{endpoints("web", []int{1, 2}, nil)})
	counts, _ := hits(t, c.client, "tcp", web, 20)
	if len(counts) != 1 {
		t.Fatalf("one client went to %v, want one endpoint", counts)
	}
	var stuck string
	for name := range counts {
		stuck = name
	}
	counts, _ = hits(t, c.client, "udp", webUDP, 10)
	if len(counts) != 1 {
		t.Errorf("udp: one client went to %v, want one endpoint", counts)
	}
	counts, _ = hits(t, c.node, "tcp", web, 10)
	if len(counts) != 1 {
		t.Errorf("from the node: went to %v, want one endpoint", counts)
	}
	other, keep := "p1", []int{1}
	if stuck == "p1" {
		other, keep = "p2", []int{2}
	}
	p.OnEndpoints(endpoints("web", keep, nil))
	syncNow(t, p)
	counts, _ = hits(t, c.client, "tcp", web, 10)
	checkSplit(t, c, "after the sticky endpoint went", counts, 10, other)
}

// testHairpin: a pod reaching itself through the service is masqueraded,
// or its reply would go straight back to itself and be dropped.
func testHairpin(t *testing.T, c *cluster) {
	c.start(t, []*corev1.Service{service("web", vip, false)}, []*corev1.Endpoints{endpoints("web", []int{1}, nil)})
	counts, peers := hits(t, c.pods[0], "tcp", web, 5)
	checkSplit(t, c, "hairpin", counts, 5, "p1")
	if len(peers) != 1 || !peers[nodeBridge] {
		t.Errorf("hairpin: p1 saw itself as %v, want masqueraded to %s", peers, nodeBridge)
	}
}

// testNoEndpoints: a service without ready endpoints is refused at once
// (not sent on towards the default route, not left to time out).
func testNoEndpoints(t *testing.T, c *cluster) {
	c.start(t, []*corev1.Service{service("web", vip, false)}, []*corev1.Endpoints{endpoints("web", nil, []int{1})})
	start := time.Now()
	r, err := c.client.Dial("tcp", web, 3*time.Second)
	if err == nil {
		t.Fatalf("service without endpoints answered by %s", r.Name)
	}
	if d := time.Since(start); d > time.Second || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("after %s: %v; want connection refused at once", d, err)
	}
	c.alive(t)
}

// testDrift: everything the backend owns deleted behind the running proxy's
// back (by another instance of the backend) is noticed by the periodic
// check, with no Service change to prompt it, and restored.
func testDrift(t *testing.T, c *cluster) {
	b := c.kind.new(t, c)
	p := proxy.New(proxy.Config{Backend: b, MinSyncInterval: 5 * time.Millisecond, DrainTimeout: 10 * time.Second,
		Now: c.clock.Now, ResyncInterval: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- p.Run(ctx) }()
	defer func() {
		cancel()
		<-runDone
	}()
	p.ReplaceServices([]*corev1.Service{service("web", vip, false)})
	p.ReplaceEndpoints([]*corev1.Endpoints{endpoints("web", []int{1, 2}, nil)})
	waitCond(t, "first sync", func() bool { return p.Stats().Syncs > 0 })
	counts, _ := hits(t, c.client, "tcp", web, 10)
	checkBoth(t, "before", counts, 10, "p1", "p2")

	reads := p.Stats().FullReads
	if err := c.kind.new(t, c).Cleanup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, err := c.client.Dial("tcp", web, time.Second); err == nil && p.Stats().FullReads == reads {
		t.Fatalf("the service still answered (%s) with its rules deleted", r.Name)
	}
	waitCond(t, "a kernel read after the drift", func() bool { return p.Stats().FullReads > reads })
	waitCond(t, "the service answering again", func() bool {
		_, err := c.client.Dial("tcp", web, time.Second)
		return err == nil
	})
	counts, _ = hits(t, c.client, "tcp", web, 10)
	checkBoth(t, "after the repair", counts, 10, "p1", "p2")
}

// checkBoth is checkSplit without round robin's exact split: the drift
// test runs the periodic check every 100 ms, and under qemu IPVS once split
// 10 connections 4/6 there (not understood yet; the exact split is
// testSplit's business). Every endpoint must still get connections, and
// only they.
func checkBoth(t *testing.T, what string, counts map[string]int, n int, want ...string) {
	t.Helper()
	checkSplit(t, &cluster{kind: backendKind{}}, what, counts, n, want...)
}

func waitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
