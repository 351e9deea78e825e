package agent

import (
	"context"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

// A lone server below its free-disk reserve has no one to hand writes to:
// creates and updates, through the API and in-process, fail with 507
// naming the data dir; reads and deletes still work; it reports not ready.
// (internal/e2e TestDiskFullServer fills a real filesystem.)
func TestLoneServerOnAFullDiskRefusesWritesWith507(t *testing.T) {
	c := startCluster(t, 1, "")
	b := c.agents[0]
	createConfigMaps(t, c, "kept", 2)
	reserve := b.disk.reserve.Load()
	b.disk.reserve.Store(1 << 62)
	b.checkDisk()
	code, body := do(t, b, "POST", cmPath, "", `{"metadata":{"name":"new"}}`)
	if code != http.StatusInsufficientStorage || !strings.Contains(body, "insufficient storage on server s1: its data dir "+b.cfg.DataDir) ||
		!strings.Contains(body, "--min-free-disk") {
		t.Fatalf("create on a full disk: %d %s", code, body)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "inproc", Namespace: "default"}}
	api.ConfigMap.SetTypeMeta(cm)
	if _, err := b.Create(context.Background(), cm); apierrors.ReasonForError(err) != "InsufficientStorage" {
		t.Fatalf("in-process create on a full disk: %v", err)
	}
	if code, body := do(t, b, "GET", cmPath, "", ""); code != 200 {
		t.Errorf("list on a full disk: %d %s", code, body)
	}
	if code, body := do(t, b, "DELETE", cmPath+"/kept-0", "", ""); code != 200 {
		t.Errorf("delete on a full disk: %d %s", code, body)
	}
	if code, body := do(t, b, "GET", "/readyz", "", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "data dir almost full") {
		t.Errorf("readyz on a full disk: %d %s", code, body)
	}
	// Space returns: writes are accepted again.
	b.disk.reserve.Store(reserve)
	b.checkDisk()
	if code, body := do(t, b, "POST", cmPath, "", `{"metadata":{"name":"new"}}`); code != 201 {
		t.Errorf("create once space returned: %d %s", code, body)
	}
}
