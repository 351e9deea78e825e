package multihost

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"orch.dev/orch/api"
)

// badInput: a clusterIP outside 10.96.0.0/16 and a node port already
// taken are refused with 422 naming the field, and nothing is stored; a
// Service whose named targetPort no container declares gets no addresses
// in its Endpoints and no DNAT on any node (its virtual IP rejects).
func (s *site) badInput(t *testing.T, pods map[string]*corev1.Pod) {
	ctx := context.Background()
	refused := func(svc *corev1.Service, field string) {
		t.Helper()
		_, err := s.cl.Create(ctx, svc)
		st, ok := err.(apierrors.APIStatus)
		if !ok || st.Status().Code != 422 || !strings.Contains(err.Error(), field) {
			t.Errorf("creating service %s: got %v; want 422 Invalid naming %s", svc.Name, err, field)
		}
		if _, err := s.cl.Get(ctx, api.Service, "default", svc.Name, false); !apierrors.IsNotFound(err) {
			t.Errorf("the refused service %s was stored (get: %v)", svc.Name, err)
		}
	}
	refused(service("outside", func(svc *corev1.Service) { svc.Spec.ClusterIP = "10.97.0.10" }), "spec.clusterIP")
	nodePort := func(svc *corev1.Service) {
		svc.Spec.Type = corev1.ServiceTypeNodePort
		svc.Spec.Ports[0].NodePort = 30080
	}
	if _, err := s.cl.Create(ctx, service("np1", nodePort)); err != nil {
		t.Fatalf("creating NodePort service np1: %v", err)
	}
	refused(service("np2", nodePort), "spec.ports[0].nodePort")

	// badport: the proxy has seen it (its service chain is there, with
	// its VIP in the reject set) but has no endpoint for it.
	bad := s.clusterIP("badport")
	vip := s.clusterIP("web")
	svcChain := func(ip string) string { return "svc-" + ip + "-tcp-80" }
	epChain := func(ip string, pod string) string {
		return fmt.Sprintf("ep-%s-tcp-80-%s-8080", ip, pods[pod].Status.PodIP)
	}
	s.c.Eventually(30*time.Second, "Endpoints badport written and both proxies programmed", func() bool {
		if _, _, ok := s.endpoints("badport"); !ok {
			return false
		}
		for _, w := range s.workers {
			chains, err := nftChains(w.host.NS)
			if err != nil || !chains[svcChain(bad)] || !chains[epChain(vip, "web-1")] || !chains[epChain(vip, "web-2")] {
				return false
			}
		}
		return true
	})
	if ready, notReady, _ := s.endpoints("badport"); len(ready)+len(notReady) != 0 {
		t.Errorf("Endpoints badport lists %v ready and %v not ready; want no address (no pod declares port \"nosuch\")", ready, notReady)
	}
	for _, w := range s.workers {
		chains, err := nftChains(w.host.NS)
		if err != nil {
			t.Fatal(err)
		}
		for ch := range chains {
			if strings.HasPrefix(ch, "ep-"+bad+"-") {
				t.Errorf("%s: endpoint chain %s for badport, whose target port no container declares", w.name, ch)
			}
		}
	}
	// Its VIP refuses at once (the reject rule), where web's answers.
	start := time.Now()
	code, out, err := execOut(ctx, s.cl, "client", "busybox", "timeout", "5", "wget", "-q", "-O", "-", "http://"+bad+"/")
	if err != nil || code == 0 || !strings.Contains(out, "refused") {
		t.Errorf("fetching badport's VIP %s: exit %d, %v, %q; want connection refused", bad, code, err, out)
	}
	t.Logf("badport's VIP refused the connection in %v", time.Since(start).Round(time.Millisecond))
}

type answer struct {
	pod string // "" for a failed fetch
	at  time.Time
}

// notReadyLeaves: the client fetches web's VIP in a loop (a new
// connection each time) while web-2 starts failing its readiness probe.
// From the moment a watcher sees web-2 not Ready, new connections stop
// going to it: the test measures that delay, requires 50 answers in a row
// from web-1 after web-2's last, and that no fetch failed.
func (s *site) notReadyLeaves(t *testing.T, vip string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answers := make(chan answer, 1<<16)
	lines := &lineWriter{fn: func(line string, at time.Time) {
		if line == "fetch failed" {
			answers <- answer{at: at}
		} else if names := answeredBy(line); len(names) == 1 {
			answers <- answer{pod: names[0], at: at}
		}
	}}
	script := fmt.Sprintf(`i=0; while [ $i -lt 5000 ]; do busybox timeout 5 wget -q -O - http://%s/ || echo "fetch failed"; i=$((i+1)); done`, vip)
	var stderr strings.Builder
	done := make(chan error, 1)
	go func() {
		code, err := execStream(ctx, s.cl, "client", lines, &stderr, "sh", "-c", script)
		done <- fmt.Errorf("the fetch loop ended: exit %d, %v", code, err)
	}()

	deadline := time.After(60 * time.Second)
	seen := map[string]int{}
	failed, n := 0, 0
	var first, latest, last time.Time // last: web-2's last answer
	next := func() answer {
		t.Helper()
		select {
		case a := <-answers:
			if a.pod == "" {
				failed++
			}
			if n++; n == 1 {
				first = a.at
			}
			if a.pod == "web-2" {
				last = a.at
			}
			seen[a.pod], latest = seen[a.pod]+1, a.at
			return a
		case err := <-done:
			t.Fatalf("%v; answers so far %v; stderr:\n%s", err, seen, stderr.String())
		case <-deadline:
			t.Fatalf("deadline: answers so far %v", seen)
		}
		return answer{}
	}
	for seen["web-1"] == 0 || seen["web-2"] == 0 {
		next()
	}
	// The watch is on the leader, which applies a change as soon as it
	// commits (a follower learns of the commit a little later).
	leader := s.c.WaitLeader(nil, 10*time.Second)
	notReady := watchNotReady(ctx, t, s.c.Client(leader.URL()), "web-2")
	flipped := time.Now()
	if code, out, err := execOut(ctx, s.cl, "web-2", "touch", "/tmp/unready"); err != nil || code != 0 {
		t.Fatalf("touch /tmp/unready in web-2: exit %d, %v: %s", code, err, out)
	}
	var t0 time.Time
	run := 0 // answers from web-1 since web-2's last (and since t0)
	for t0.IsZero() || run < 50 {
		select {
		case t0 = <-notReady:
			run = 0
			continue
		default:
		}
		switch a := next(); {
		case a.pod == "web-2":
			run = 0
		case a.pod == "web-1" && !t0.IsZero():
			run++
		}
	}
	removal := last.Sub(t0)
	// The resolution is the interval between fetches (and which pod the
	// last few before the removal happened to reach).
	t.Logf("web-2 failing its probe: seen not Ready %v after the flip; its last answer came %v after that (negative: before); "+
		"%d answers %v, one per %v", t0.Sub(flipped).Round(time.Millisecond), removal.Round(time.Millisecond), n, seen,
		(latest.Sub(first) / time.Duration(max(n-1, 1))).Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d fetches of the VIP failed while one endpoint stayed ready", failed)
	}
	if removal > 2*time.Second {
		t.Errorf("web-2 answered new connections %v after it was seen not Ready; want well under a second", removal)
	}
	ready, notReadyIPs, _ := s.endpoints("web")
	if len(ready) != 1 || len(notReadyIPs) != 1 {
		t.Errorf("Endpoints web: ready %v, not ready %v; want one of each", ready, notReadyIPs)
	}
}
