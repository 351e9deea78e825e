package proxy

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// fakeBackend is an in-memory kernel.
type fakeBackend struct {
	mu      sync.Mutex
	kernel  RuleSet
	applies []Plan
	reads   int
	failN   int // fail this many Applies, keeping half of the changes
	// track keeps lastKernel: the kernel as the last Read or Apply left it.
	track      bool
	lastKernel RuleSet
}

func (f *fakeBackend) Init(ctx context.Context) error { return nil }

func (f *fakeBackend) Read(ctx context.Context) (RuleSet, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.track {
		f.lastKernel = f.kernel.Clone()
	}
	return f.kernel.Clone(), nil
}

func (f *fakeBackend) Apply(ctx context.Context, p Plan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.kernel == nil {
		f.kernel = RuleSet{}
	}
	f.applies = append(f.applies, p)
	n := len(p.Changes)
	if f.failN > 0 {
		f.failN--
		n /= 2
	}
	for _, c := range p.Changes[:n] {
		if c.Op == Remove {
			delete(f.kernel, c.Key)
		} else {
			f.kernel[c.Key] = c.New.Clone()
		}
	}
	if n < len(p.Changes) {
		return errors.New("injected failure")
	}
	if f.track {
		f.lastKernel = f.kernel.Clone()
	}
	return nil
}

func (f *fakeBackend) Cleanup(ctx context.Context) error { return nil }

func (f *fakeBackend) state() (RuleSet, int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.kernel.Clone(), len(f.applies), f.reads
}

func webSvc(ip string) *corev1.Service {
	return svc("web", ip, nil, port("", "", 80, intstr.FromInt32(8080), 0))
}

func webEps(ips ...string) *corev1.Endpoints {
	return eps("web", subset(ips, nil, eport("", "", 8080)))
}

func TestSyncWaitsForBothLists(t *testing.T) {
	fb := &fakeBackend{kernel: ruleSet(t, "10.96.0.99:80 10.0.0.1:80")}
	p := New(Config{Backend: fb})
	p.OnService(webSvc("10.96.0.10"))
	if err := p.Sync(context.Background(), false); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("sync before lists: %v", err)
	}
	p.ReplaceServices([]*corev1.Service{webSvc("10.96.0.10")})
	if err := p.Sync(context.Background(), false); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("sync before endpoints list: %v", err)
	}
	if k, _, _ := fb.state(); len(k) != 1 {
		t.Fatalf("kernel touched before both lists: %s", k)
	}
	p.ReplaceEndpoints([]*corev1.Endpoints{webEps("10.244.0.5")})
	if err := p.Sync(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	k, _, _ := fb.state()
	if want := ruleSet(t, "10.96.0.10:80 10.244.0.5:8080"); !k.Equal(want) {
		t.Fatalf("kernel\n%s\nwant\n%s", k, want)
	}
}

// TestStartReconcilesWithKernel: the first sync reads the kernel and only
// changes what differs; stale virtual servers go.
func TestStartReconcilesWithKernel(t *testing.T) {
	fb := &fakeBackend{kernel: ruleSet(t, "10.96.0.10:80 10.244.0.5:8080", "10.96.0.99:80 10.0.0.1:80")}
	p := New(Config{Backend: fb})
	p.ReplaceServices([]*corev1.Service{webSvc("10.96.0.10")})
	p.ReplaceEndpoints([]*corev1.Endpoints{webEps("10.244.0.5")})
	if err := p.Sync(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	if got := changes(fb.applies[0].Changes); got != "remove 10.96.0.99/tcp/80" {
		t.Fatalf("first sync changed %q", got)
	}
	// Nothing more to do: no Apply at all.
	if err := p.Sync(context.Background(), false); err != nil || len(fb.applies) != 1 {
		t.Fatalf("idle sync applied again (%d, %v)", len(fb.applies), err)
	}
}

// TestApplyErrorRereads: after a failed Apply the kernel state is unknown;
// the next sync reads it and finishes the job.
func TestApplyErrorRereads(t *testing.T) {
	fb := &fakeBackend{failN: 1}
	p := New(Config{Backend: fb})
	p.ReplaceServices([]*corev1.Service{webSvc("10.96.0.10"), svc("b", "10.96.0.11", nil, port("", "", 80, intstr.FromInt32(80), 0))})
	p.ReplaceEndpoints(nil)
	if err := p.Sync(context.Background(), false); err == nil {
		t.Fatal("injected failure not reported")
	}
	if err := p.Sync(context.Background(), false); err != nil {
		t.Fatal(err)
	}
	k, _, reads := fb.state()
	if len(k) != 2 || reads != 2 {
		t.Fatalf("kernel %s after %d reads", k, reads)
	}
	if got := changes(fb.applies[1].Changes); got != "add 10.96.0.11/tcp/80" {
		t.Fatalf("retry changed %q, want only what the failed apply missed", got)
	}
}

// TestRunCoalesces: a burst of updates becomes few syncs, and the last state
// wins.
func TestRunCoalesces(t *testing.T) {
	fb := &fakeBackend{}
	p := New(Config{Backend: fb, MinSyncInterval: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	p.ReplaceServices([]*corev1.Service{webSvc("10.96.0.10")})
	p.ReplaceEndpoints(nil)
	for i := 0; i < 200; i++ {
		p.OnEndpoints(webEps("10.244.0.5", "10.244.0."+string(rune('6'+i%3))))
	}
	p.OnEndpoints(webEps("10.244.0.5"))
	deadline := time.Now().Add(5 * time.Second)
	want := ruleSet(t, "10.96.0.10:80 10.244.0.5:8080")
	for {
		k, _, _ := fb.state()
		// Removed endpoints drain (weight 0) for the default 15s: compare
		// the ready ones.
		if v := k[want.Keys()[0]]; v != nil && v.Ready() == 1 {
			if e, _ := v.Endpoint(want[want.Keys()[0]].Endpoints[0].Addr); e.Weight == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never converged: %s", k)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if _, applies, _ := fb.state(); applies > 5 {
		t.Errorf("201 updates made %d applies, want a handful", applies)
	}
}

// TestRunDeletesDrainedEndpoint: Run wakes up when a draining endpoint is
// due, without any further update.
func TestRunDeletesDrainedEndpoint(t *testing.T) {
	fb := &fakeBackend{}
	p := New(Config{Backend: fb, MinSyncInterval: time.Millisecond, DrainTimeout: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	p.ReplaceServices([]*corev1.Service{webSvc("10.96.0.10")})
	p.ReplaceEndpoints([]*corev1.Endpoints{webEps("10.244.0.5", "10.244.0.6")})
	waitFor(t, fb, ruleSet(t, "10.96.0.10:80 10.244.0.5:8080 10.244.0.6:8080"))
	p.OnEndpoints(webEps("10.244.0.5"))
	waitFor(t, fb, ruleSet(t, "10.96.0.10:80 10.244.0.5:8080 ~10.244.0.6:8080"))
	waitFor(t, fb, ruleSet(t, "10.96.0.10:80 10.244.0.5:8080"))
}

func waitFor(t *testing.T, fb *fakeBackend, want RuleSet) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		k, _, _ := fb.state()
		if k.Equal(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("kernel\n%s\nwant\n%s", k, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMode(t *testing.T) {
	yes, no := func() bool { return true }, func() bool { return false }
	for _, tc := range []struct {
		in   string
		ipvs func() bool
		want Mode
		err  error
	}{
		{"", yes, ModeIPVS, nil},
		{"auto", no, ModeNFTables, nil},
		{"ipvs", yes, ModeIPVS, nil},
		{"ipvs", no, "", ErrNoIPVS},
		{"nftables", yes, ModeNFTables, nil},
	} {
		m, err := ParseMode(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		got, err := SelectMode(m, tc.ipvs)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%q: got %q %v, want %q %v", tc.in, got, err, tc.want, tc.err)
		}
	}
	if _, err := ParseMode("iptables"); err == nil {
		t.Error("iptables accepted")
	}
}

// checkingBackend is a fakeBackend with a drift check that reports whether
// the kernel still equals what was last read or applied.
type checkingBackend struct {
	fakeBackend
	checks int
}

func (f *checkingBackend) Check(ctx context.Context) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	return f.lastKernel == nil || f.kernel.Equal(f.lastKernel), nil
}

// TestRunChecksInsteadOfRereading: with a Checker backend the periodic
// resync is a check, not a kernel read; drift found by a check makes the
// next sync read the kernel and repair it, and updates keep flowing.
func TestRunChecksInsteadOfRereading(t *testing.T) {
	fb := &checkingBackend{}
	fb.track = true
	p := New(Config{Backend: fb, MinSyncInterval: time.Millisecond, ResyncInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.Run(ctx)
	p.ReplaceServices([]*corev1.Service{webSvc("10.96.0.10")})
	p.ReplaceEndpoints([]*corev1.Endpoints{webEps("10.244.0.5")})
	want := ruleSet(t, "10.96.0.10:80 10.244.0.5:8080")
	waitFor(t, &fb.fakeBackend, want)
	waitUntil(t, "three checks", func() bool { return p.Stats().Checks >= 3 })
	if _, _, reads := fb.state(); reads != 1 {
		t.Fatalf("%d kernel reads with nothing drifting, want only the first", reads)
	}
	// Someone deletes the virtual server behind the proxy's back.
	fb.mu.Lock()
	delete(fb.kernel, want.Keys()[0])
	fb.mu.Unlock()
	waitFor(t, &fb.fakeBackend, want)
	if _, _, reads := fb.state(); reads != 2 {
		t.Fatalf("%d kernel reads after one drift, want 2", reads)
	}
	p.OnEndpoints(webEps("10.244.0.5", "10.244.0.6"))
	waitFor(t, &fb.fakeBackend, ruleSet(t, "10.96.0.10:80 10.244.0.5:8080 10.244.0.6:8080"))
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
