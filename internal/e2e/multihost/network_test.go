package multihost

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// The issue's acceptance point "cross-node pod-to-pod and pod-to-service
// traffic, and DNS lookups from inside a pod, in a multi-host test": web-1
// on w1 and web-2 on w2 behind Service web (targetPort named "http"), a
// headless Service over the same pods, a client pod on w1. Every check
// runs from a pod on each node (the client on w1, web-2 on w2), through
// that node's own proxy, routes and DNS server.
func TestServiceNetworkAcrossHosts(t *testing.T) {
	s := startSite(t)
	cl := s.cl
	ctx := context.Background()
	for _, o := range []api.Object{
		webPod("web-1", "w1"), webPod("web-2", "w2"), clientPod("client", "w1"),
		service("web", nil),
		service("web-headless", func(svc *corev1.Service) { svc.Spec.ClusterIP = corev1.ClusterIPNone }),
		service("badport", func(svc *corev1.Service) { svc.Spec.Ports[0].TargetPort = intstr.FromString("nosuch") }),
	} {
		if _, err := cl.Create(ctx, o); err != nil {
			t.Fatalf("creating %s: %v", o.GetName(), err)
		}
	}
	pods := s.waitPods("web-1", "web-2", "client")
	vip := s.clusterIP("web")
	s.waitEndpoints("web", pods["web-1"].Status.PodIP, pods["web-2"].Status.PodIP)
	// Both proxies have programmed both endpoints before any fetch: from
	// then on every fetch of the service must succeed.
	s.c.Eventually(30*time.Second, "both endpoints of web in nftables on both workers", func() bool {
		for _, w := range s.workers {
			chains, err := nftChains(w.host.NS)
			for _, p := range []string{"web-1", "web-2"} {
				if err != nil || !chains[fmt.Sprintf("ep-%s-tcp-80-%s-8080", vip, pods[p].Status.PodIP)] {
					return false
				}
			}
		}
		return true
	})
	// The pods are where they were put, each in its node's pod CIDR.
	for name, node := range map[string]string{"web-1": "w1", "web-2": "w2", "client": "w1"} {
		p := pods[name]
		cidr := netip.MustParsePrefix(s.worker(node).podCIDR)
		if p.Spec.NodeName != node || !cidr.Contains(netip.MustParseAddr(p.Status.PodIP)) {
			t.Fatalf("pod %s runs on %s with IP %s; want node %s, an IP in %s", name, p.Spec.NodeName, p.Status.PodIP, node, cidr)
		}
	}
	if s.worker("w1").podCIDR == s.worker("w2").podCIDR {
		t.Fatalf("both workers have pod CIDR %s", s.worker("w1").podCIDR)
	}
	// from: a pod on each node, and the other node's web pod.
	from := map[string]string{"client": "web-2", "web-2": "web-1"}

	t.Run("PodToPodAcrossNodes", func(t *testing.T) {
		for src, dst := range from {
			url := fmt.Sprintf("http://%s:8080/", pods[dst].Status.PodIP)
			// The routes follow the Node objects: retried for a while.
			if err := retry(20*time.Second, func() error {
				code, out, err := execOut(ctx, cl, src, "busybox", "timeout", "5", "wget", "-q", "-O", "-", url)
				if err != nil || code != 0 || !slices.Equal(answeredBy(out), []string{dst}) {
					return fmt.Errorf("exit %d, %v:\n%s", code, err, out)
				}
				return nil
			}); err != nil {
				t.Errorf("%s (%s) fetching %s (%s on %s): %v", src, pods[src].Spec.NodeName, url, dst, pods[dst].Spec.NodeName, err)
			}
		}
	})

	t.Run("PodToService", func(t *testing.T) {
		var wg sync.WaitGroup
		for src := range from {
			for _, target := range []string{vip, "web.default.svc.cluster.local", "web"} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := s.seesBothPods(ctx, src, "http://"+target+"/"); err != nil {
						t.Errorf("%s (on %s) -> http://%s/: %v", src, pods[src].Spec.NodeName, target, err)
					}
				}()
			}
		}
		wg.Wait()
	})

	t.Run("DNSFromPods", func(t *testing.T) {
		ips := []string{pods["web-1"].Status.PodIP, pods["web-2"].Status.PodIP}
		for src := range from {
			node := s.worker(pods[src].Spec.NodeName)
			gw := netip.MustParsePrefix(node.podCIDR).Masked().Addr().Next().String()
			for _, q := range []struct {
				name    string
				want    []string
				wantErr bool
			}{
				{"web.default.svc.cluster.local", []string{vip}, false},
				{"web-headless.default.svc.cluster.local", ips, false},
				{"nosuch.default.svc.cluster.local", []string{"NXDOMAIN"}, true},
			} {
				// The node's DNS server follows the API: retried for a while.
				if err := retry(20*time.Second, func() error {
					code, out, err := execOut(ctx, cl, src, "busybox", "nslookup", q.name)
					ok := err == nil && (code != 0) == q.wantErr && strings.Contains(out, "Server:\t\t"+gw+"\n")
					for _, w := range q.want {
						ok = ok && strings.Contains(out, w)
					}
					if !ok {
						return fmt.Errorf("exit %d, %v:\n%s", code, err, out)
					}
					return nil
				}); err != nil {
					t.Errorf("nslookup %s in %s (node %s, cluster DNS %s): want %v from the node's DNS; %v", q.name, src, node.name, gw, q.want, err)
				}
			}
		}
	})

	t.Run("BadInput", func(t *testing.T) { s.badInput(t, pods) })

	t.Run("NotReadyPodLeavesService", func(t *testing.T) { s.notReadyLeaves(t, vip) })
}

// seesBothPods fetches url from pod src, ten fetches per exec (each a new
// connection), until both web pods have answered; any failed fetch is an
// error.
func (s *site) seesBothPods(ctx context.Context, src, url string) error {
	seen := map[string]bool{}
	deadline := time.Now().Add(45 * time.Second)
	script := fmt.Sprintf(`i=0; while [ $i -lt 10 ]; do busybox timeout 5 wget -q -O - %s || echo "fetch failed"; i=$((i+1)); done`, url)
	for time.Now().Before(deadline) {
		code, out, err := execOut(ctx, s.cl, src, "sh", "-c", script)
		if err != nil || code != 0 || strings.Contains(out, "fetch failed") {
			return fmt.Errorf("exit %d, %v:\n%s", code, err, out)
		}
		for _, name := range answeredBy(out) {
			seen[name] = true
		}
		if seen["web-1"] && seen["web-2"] {
			return nil
		}
	}
	return fmt.Errorf("only %v answered before the deadline", seen)
}

// retry calls f until it succeeds or the time is up, and returns its last
// error.
func retry(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitPods waits until the pods run, Ready, with IPs.
func (s *site) waitPods(names ...string) map[string]*corev1.Pod {
	pods := map[string]*corev1.Pod{}
	s.c.Eventually(90*time.Second, fmt.Sprintf("pods %v Ready", names), func() bool {
		for _, n := range names {
			o, err := s.cl.Get(context.Background(), api.Pod, "default", n, true)
			if err != nil {
				return false
			}
			p := o.(*corev1.Pod)
			if !podReady(p) || p.Status.PodIP == "" {
				return false
			}
			pods[n] = p
		}
		return true
	})
	return pods
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func (s *site) clusterIP(name string) string {
	o, err := s.cl.Get(context.Background(), api.Service, "default", name, false)
	if err != nil {
		s.t.Fatal(err)
	}
	ip := o.(*corev1.Service).Spec.ClusterIP
	if _, err := netip.ParseAddr(ip); err != nil {
		s.t.Fatalf("service %s has cluster IP %q", name, ip)
	}
	return ip
}

// endpoints returns the ready and not-ready addresses of an Endpoints
// object (nil, nil when it does not exist yet).
func (s *site) endpoints(name string) (ready, notReady []string, ok bool) {
	o, err := s.cl.Get(context.Background(), api.Endpoints, "default", name, false)
	if err != nil {
		return nil, nil, false
	}
	for _, ss := range o.(*corev1.Endpoints).Subsets {
		for _, a := range ss.Addresses {
			ready = append(ready, a.IP)
		}
		for _, a := range ss.NotReadyAddresses {
			notReady = append(notReady, a.IP)
		}
	}
	slices.Sort(ready)
	slices.Sort(notReady)
	return ready, notReady, true
}

func (s *site) waitEndpoints(name string, ips ...string) {
	slices.Sort(ips)
	s.c.Eventually(30*time.Second, fmt.Sprintf("endpoints %s = %v", name, ips), func() bool {
		ready, _, _ := s.endpoints(name)
		return slices.Equal(ready, ips)
	})
}

// watchNotReady reports, on the channel, when a watcher first sees pod
// name not Ready.
func watchNotReady(ctx context.Context, t *testing.T, cl *client.Client, name string) <-chan time.Time {
	w, err := cl.Watch(ctx, api.Pod, "default", client.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan time.Time, 1)
	go func() {
		for ev := range w.Events() {
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Name == name && ev.Type != client.Deleted && !podReady(p) {
				ch <- time.Now()
				return
			}
		}
	}()
	return ch
}
