package ctrl

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

// TestEventTTL: the leader deletes an Event once it last happened more than
// the TTL ago (by any of its times), and keeps the ones within it, however
// old their creation.
func TestEventTTL(t *testing.T) {
	const ttl = 3 * time.Second
	tc := startCluster(t, clusterOptions{servers: 1, noKubelet: true, opts: Options{EventTTL: ttl}})
	now := time.Now()
	event := func(name string, mutate func(*corev1.Event)) {
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "p"},
			Reason:         "Test", Message: name, Type: corev1.EventTypeNormal}
		mutate(ev)
		api.Event.SetTypeMeta(ev)
		tc.create(ev)
	}
	// Created now; last happened an hour ago: goes within the first sweep.
	event("old-last", func(ev *corev1.Event) { ev.LastTimestamp = metav1.NewTime(now.Add(-time.Hour)) })
	// Created now, no times of its own: goes after the TTL.
	event("fresh", func(*corev1.Event) {})
	// Last observed in a series far in the future: stays.
	event("series", func(ev *corev1.Event) {
		ev.EventTime = metav1.NewMicroTime(now.Add(-time.Hour))
		ev.Series = &corev1.EventSeries{Count: 2, LastObservedTime: metav1.NewMicroTime(now.Add(time.Hour))}
	})
	exists := func(name string) bool { return tc.view().Get(api.Event, "default", name) != nil }

	tc.waitUntil(10*time.Second, "the event that last happened an hour ago deleted", func() (bool, string) {
		return !exists("old-last"), "old-last remains"
	})
	// Metadata times have whole seconds: creation may read up to 1 s early.
	if gone := time.Since(now); !exists("fresh") && gone < ttl-time.Second {
		t.Fatalf("the fresh event went after %s, within its TTL %s", gone, ttl)
	}
	tc.waitUntil(20*time.Second, "the fresh event deleted after the TTL", func() (bool, string) {
		return !exists("fresh"), fmt.Sprintf("fresh remains %s after its creation", time.Since(now).Round(time.Millisecond))
	})
	if !exists("series") {
		t.Fatal("the event whose series was last observed an hour from now was deleted")
	}
}
