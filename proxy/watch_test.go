package proxy

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/inproc"
)

// TestWatchFeedsProxier: Services and Endpoints written through the API
// reach the kernel (a fake here) through Watch and Run, and so does their
// deletion.
func TestWatchFeedsProxier(t *testing.T) {
	cl := inproc.Start(t, inproc.Options{})
	c := cl.Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := &corev1.Namespace{}
	ns.Name, ns.Kind, ns.APIVersion = "ns", "Namespace", "v1"
	if _, err := c.Create(ctx, ns); err != nil {
		t.Logf("namespace: %v", err)
	}
	fb := &fakeBackend{}
	p := New(Config{Backend: fb, MinSyncInterval: time.Millisecond, DrainTimeout: -1})
	go Watch(ctx, c, p, nil)
	go p.Run(ctx)

	s := webSvc("10.96.0.10")
	s.Kind, s.APIVersion = "Service", "v1"
	if _, err := c.Create(ctx, s); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, typed(webEps("10.244.0.5"))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fb, ruleSet(t, "10.96.0.10:80 10.244.0.5:8080"))
	e, err := c.Get(ctx, api.Endpoints, "ns", "web", false)
	if err != nil {
		t.Fatal(err)
	}
	upd := typed(webEps("10.244.0.5", "10.244.0.6"))
	upd.ResourceVersion = e.GetResourceVersion()
	if _, err := c.Update(ctx, upd); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fb, ruleSet(t, "10.96.0.10:80 10.244.0.5:8080 10.244.0.6:8080"))
	if err := c.Delete(ctx, api.Service, "ns", "web", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, fb, RuleSet{})
}

func typed(e *corev1.Endpoints) *corev1.Endpoints {
	e.Kind, e.APIVersion = "Endpoints", "v1"
	return e
}
