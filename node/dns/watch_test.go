package dns

import (
	"context"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/inproc"
)

// TestWatchFeedsServer: Services and Endpoints written through the API
// reach the DNS answers through Watch, and so do their changes and
// deletion.
func TestWatchFeedsServer(t *testing.T) {
	cl := inproc.Start(t, inproc.Options{})
	c := cl.Client()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := &corev1.Namespace{}
	ns.Name, ns.Kind, ns.APIVersion = "shop", "Namespace", "v1"
	if _, err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, Config{})
	done := make(chan struct{})
	go func() { defer close(done); Watch(ctx, c, s.Store, nil) }()
	defer func() { cancel(); <-done }()

	// A ClusterIP Service answers with the address the FSM allocated.
	web := svc("shop", "web", "", port("http", corev1.ProtocolTCP, 80))
	web.Kind, web.APIVersion = "Service", "v1"
	if _, err := c.Create(ctx, web); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, api.Service, "shop", "web", false)
	if err != nil {
		t.Fatal(err)
	}
	ip := got.(*corev1.Service).Spec.ClusterIP
	if ip == "" {
		t.Fatal("no ClusterIP allocated")
	}
	const webName = "web.shop.svc.cluster.local."
	eventually(t, s, webName, mdns.TypeA, noerror, webName+" A "+ip)

	// A headless Service without a selector: its Endpoints are ours to
	// write, and every change shows.
	db := svc("shop", "db", corev1.ClusterIPNone)
	db.Kind, db.APIVersion = "Service", "v1"
	if _, err := c.Create(ctx, db); err != nil {
		t.Fatal(err)
	}
	const dbName = "db.shop.svc.cluster.local."
	eventually(t, s, dbName, mdns.TypeA, noerror)
	e := eps("shop", "db", nil, "10.244.1.5")
	e.Kind, e.APIVersion = "Endpoints", "v1"
	if _, err := c.Create(ctx, e); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, dbName, mdns.TypeA, noerror, dbName+" A 10.244.1.5")
	cur, err := c.Get(ctx, api.Endpoints, "shop", "db", false)
	if err != nil {
		t.Fatal(err)
	}
	e = eps("shop", "db", nil, "10.244.1.5", "10.244.2.6")
	e.Kind, e.APIVersion, e.ResourceVersion = "Endpoints", "v1", cur.GetResourceVersion()
	if _, err := c.Update(ctx, e); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, dbName, mdns.TypeA, noerror, dbName+" A 10.244.1.5", dbName+" A 10.244.2.6")

	// Deleted: gone from the zone.
	if err := c.Delete(ctx, api.Service, "shop", "web", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, webName, mdns.TypeA, nxdomain)
	if err := c.Delete(ctx, api.Endpoints, "shop", "db", client.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, s, dbName, mdns.TypeA, noerror)
}

// eventually asks until the answer is the one wanted, failing the test
// after a deadline.
func eventually(t *testing.T, s *Server, name string, qtype uint16, rcode int, answer ...string) {
	t.Helper()
	slices.Sort(answer)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := ask(t, s, name, qtype)
		got := records(r.Answer)
		if r.Rcode == rcode && slices.Equal(got, answer) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s %v, want %s %v", name, mdns.RcodeToString[r.Rcode], got, mdns.RcodeToString[rcode], answer)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
