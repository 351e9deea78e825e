package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

// TestRollbackTarget: undo picks the second-highest revision (or the one
// asked for), ignores ReplicaSets without a revision, and restores the
// template without the controller's pod-template-hash label.
func TestRollbackTarget(t *testing.T) {
	r1 := fixtureReplicaSet("web-4a3b", "1", "nginx:1.25", 0, 0, 26*time.Hour)
	r2 := fixtureReplicaSet("web-5b6c", "2", "nginx:1.26", 0, 0, 5*time.Hour)
	r10 := fixtureReplicaSet("web-7d9f", "10", "nginx:1.27", 3, 3, time.Hour) // numeric, not string, order
	bad := fixtureReplicaSet("web-0000", "x", "nginx:0", 0, 0, time.Hour)
	none := fixtureReplicaSet("web-1111", "", "nginx:0", 0, 0, time.Hour)
	tests := []struct {
		name    string
		rses    []*appsv1.ReplicaSet
		to      int64
		want    string // ReplicaSet name
		wantRev int64
		wantErr string
	}{
		{"previous", []*appsv1.ReplicaSet{r10, r1, r2}, 0, "web-5b6c", 2, ""},
		{"previous, unordered input", []*appsv1.ReplicaSet{r2, bad, r10, none, r1}, 0, "web-5b6c", 2, ""},
		{"two revisions", []*appsv1.ReplicaSet{r1, r2}, 0, "web-4a3b", 1, ""},
		{"to revision", []*appsv1.ReplicaSet{r10, r1, r2}, 1, "web-4a3b", 1, ""},
		{"to current revision", []*appsv1.ReplicaSet{r10, r1, r2}, 10, "web-7d9f", 10, ""},
		{"missing revision", []*appsv1.ReplicaSet{r10, r1}, 2, "", 0, "unable to find specified revision 2 in history"},
		{"negative revision", []*appsv1.ReplicaSet{r10, r1}, -1, "", 0, "unable to find specified revision -1"},
		{"one revision", []*appsv1.ReplicaSet{r10, none}, 0, "", 0, "no rollout history found"},
		{"nothing", nil, 0, "", 0, "no rollout history found"},
	}
	for _, tt := range tests {
		rs, rev, err := rollbackTarget(tt.rses, tt.to)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: error %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || rs.Name != tt.want || rev != tt.wantRev {
			t.Errorf("%s: got %v rev %d (%v), want %s rev %d", tt.name, rs, rev, err, tt.want, tt.wantRev)
		}
	}

	tmpl := templateWithoutHash(&r2.Spec.Template)
	if _, ok := tmpl.Labels[podTemplateHashLabel]; ok || tmpl.Labels["app"] != "web" || tmpl.Spec.Containers[0].Image != "nginx:1.26" {
		t.Errorf("restored template: labels %v image %s", tmpl.Labels, tmpl.Spec.Containers[0].Image)
	}
	if _, ok := r2.Spec.Template.Labels[podTemplateHashLabel]; !ok {
		t.Errorf("templateWithoutHash changed the ReplicaSet")
	}
	dep := fixtureDeployment()
	if !equalIgnoreHash(&r10.Spec.Template, &dep.Spec.Template) {
		t.Errorf("a ReplicaSet of the current template differs from it beyond the hash label")
	}
	if equalIgnoreHash(&r2.Spec.Template, &dep.Spec.Template) {
		t.Errorf("templates of different images compare equal")
	}

	got := rollbackAnnotations(
		map[string]string{revisionAnnotation: "10", changeCauseAnnotation: "bump to 1.27", "team": "web", lastAppliedAnnotation: "{}"},
		map[string]string{revisionAnnotation: "2", changeCauseAnnotation: "bump to 1.26", "deployment.kubernetes.io/desired-replicas": "3"})
	want := map[string]string{revisionAnnotation: "10", changeCauseAnnotation: "bump to 1.26", "team": "web", lastAppliedAnnotation: "{}"}
	if b1, b2 := mustJSON(t, got), mustJSON(t, want); b1 != b2 {
		t.Errorf("rollbackAnnotations = %s, want %s", b1, b2)
	}
	if got := rollbackAnnotations(map[string]string{changeCauseAnnotation: "new"}, nil); got != nil {
		t.Errorf("a change cause the old revision lacks is kept: %v", got)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func deploymentWith(gen, observed int64, spec int32, st appsv1.DeploymentStatus) *appsv1.Deployment {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: gen}, Spec: appsv1.DeploymentSpec{Replicas: &spec}, Status: st}
	d.Status.ObservedGeneration = observed
	api.Deployment.SetTypeMeta(d)
	return d
}

// TestRolloutStatusMessages walks a rollout of 6 replicas through the
// states kubectl reports, to success and to a missed progress deadline.
func TestRolloutStatusMessages(t *testing.T) {
	progressing := func(reason string) []appsv1.DeploymentCondition {
		return []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: reason}}
	}
	const wait = `Waiting for deployment "web" rollout to finish: `
	tests := []struct {
		name    string
		obj     api.Object
		want    string
		done    bool
		wantErr string
	}{
		{"spec not observed", deploymentWith(3, 2, 6, appsv1.DeploymentStatus{Replicas: 6, UpdatedReplicas: 6, AvailableReplicas: 6}),
			"Waiting for deployment spec update to be observed...", false, ""},
		{"updating", deploymentWith(3, 3, 6, appsv1.DeploymentStatus{Replicas: 8, UpdatedReplicas: 2, AvailableReplicas: 5}),
			wait + "2 out of 6 new replicas have been updated...", false, ""},
		{"old pods terminating", deploymentWith(3, 3, 6, appsv1.DeploymentStatus{Replicas: 7, UpdatedReplicas: 6, AvailableReplicas: 6}),
			wait + "1 old replicas are pending termination...", false, ""},
		{"becoming available", deploymentWith(3, 3, 6, appsv1.DeploymentStatus{Replicas: 6, UpdatedReplicas: 6, AvailableReplicas: 4}),
			wait + "4 of 6 updated replicas are available...", false, ""},
		{"complete", deploymentWith(3, 3, 6, appsv1.DeploymentStatus{Replicas: 6, UpdatedReplicas: 6, AvailableReplicas: 6}),
			`deployment "web" successfully rolled out`, true, ""},
		{"complete, observed ahead", deploymentWith(3, 4, 6, appsv1.DeploymentStatus{Replicas: 6, UpdatedReplicas: 6, AvailableReplicas: 6}),
			`deployment "web" successfully rolled out`, true, ""},
		{"scaled to zero", deploymentWith(1, 1, 0, appsv1.DeploymentStatus{}), `deployment "web" successfully rolled out`, true, ""},
		{"deadline exceeded", deploymentWith(3, 3, 6, appsv1.DeploymentStatus{Replicas: 8, UpdatedReplicas: 2, Conditions: progressing(progressDeadlineExceeded)}),
			"", false, `deployment "web" exceeded its progress deadline`},
		{"progressing false for another reason", deploymentWith(3, 3, 6, appsv1.DeploymentStatus{Replicas: 6, UpdatedReplicas: 6, AvailableReplicas: 6, Conditions: progressing("Paused")}),
			`deployment "web" successfully rolled out`, true, ""},
		{"daemon set updating", daemonSetWith(2, 2, appsv1.DaemonSetStatus{DesiredNumberScheduled: 5, UpdatedNumberScheduled: 3, NumberAvailable: 5}),
			`Waiting for daemon set "agent" rollout to finish: 3 out of 5 new pods have been updated...`, false, ""},
		{"daemon set becoming available", daemonSetWith(2, 2, appsv1.DaemonSetStatus{DesiredNumberScheduled: 5, UpdatedNumberScheduled: 5, NumberAvailable: 4}),
			`Waiting for daemon set "agent" rollout to finish: 4 of 5 updated pods are available...`, false, ""},
		{"daemon set not observed", daemonSetWith(2, 1, appsv1.DaemonSetStatus{}), "Waiting for daemon set spec update to be observed...", false, ""},
		{"daemon set complete", daemonSetWith(2, 2, appsv1.DaemonSetStatus{DesiredNumberScheduled: 5, UpdatedNumberScheduled: 5, NumberAvailable: 5}),
			`daemon set "agent" successfully rolled out`, true, ""},
	}
	for _, tt := range tests {
		msg, done, err := rolloutStatusOf(tt.obj)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("%s: error %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || msg != tt.want || done != tt.done {
			t.Errorf("%s: got %q done=%v err=%v\nwant %q done=%v", tt.name, msg, done, err, tt.want, tt.done)
		}
	}
	ds := daemonSetWith(1, 1, appsv1.DaemonSetStatus{})
	ds.Spec.UpdateStrategy.Type = appsv1.OnDeleteDaemonSetStrategyType
	if _, _, err := rolloutStatusOf(ds); err == nil || !strings.Contains(err.Error(), "only available for RollingUpdate") {
		t.Errorf("OnDelete daemon set: %v", err)
	}
}

func daemonSetWith(gen, observed int64, st appsv1.DaemonSetStatus) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Generation: gen}, Status: st}
	ds.Spec.UpdateStrategy.Type = appsv1.RollingUpdateDaemonSetStrategyType
	ds.Status.ObservedGeneration = observed
	api.DaemonSet.SetTypeMeta(ds)
	return ds
}

func TestImagePatch(t *testing.T) {
	res, changes, err := parseImageArgs([]string{"deployment/web", "deploy/api", "web=nginx:1.28", "sidecar=envoy:2"})
	if err != nil || strings.Join(res, " ") != "deployment/web deploy/api" || len(changes) != 2 || changes[1] != (imageChange{"sidecar", "envoy:2"}) {
		t.Fatalf("parseImageArgs: %v %v %v", res, changes, err)
	}
	for _, bad := range [][]string{{"deploy/web"}, {"deploy/web", "=x"}, {"deploy/web", "web="}, {"deploy/web", "a=1", "a=2"}} {
		if _, _, err := parseImageArgs(bad); err == nil {
			t.Errorf("parseImageArgs(%q) accepted", bad)
		}
	}
	spec := &corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1"}},
		Containers:     []corev1.Container{{Name: "web", Image: "nginx:1.27"}, {Name: "sidecar", Image: "envoy:1"}},
	}
	tests := []struct {
		prefix  string
		changes []imageChange
		want    string
		wantErr string
	}{
		{"/spec/template/spec", []imageChange{{"web", "nginx:1.28"}},
			`[{"op":"test","path":"/spec/template/spec/containers/0/name","value":"web"},{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"nginx:1.28"}]`, ""},
		{"/spec", []imageChange{{"sidecar", "envoy:2"}, {"init", "busybox:2"}},
			`[{"op":"test","path":"/spec/containers/1/name","value":"sidecar"},{"op":"replace","path":"/spec/containers/1/image","value":"envoy:2"},` +
				`{"op":"test","path":"/spec/initContainers/0/name","value":"init"},{"op":"replace","path":"/spec/initContainers/0/image","value":"busybox:2"}]`, ""},
		// "*" is every container, init containers included; a later
		// argument for one container wins; unchanged images are left out.
		{"/spec", []imageChange{{"*", "nginx:1.27"}, {"sidecar", "envoy:1"}},
			`[{"op":"test","path":"/spec/initContainers/0/name","value":"init"},{"op":"replace","path":"/spec/initContainers/0/image","value":"nginx:1.27"}]`, ""},
		{"/spec", []imageChange{{"web", "nginx:1.27"}}, "", ""},
		{"/spec", []imageChange{{"web", "nginx:1.28"}, {"db", "postgres:17"}}, "", `unable to find container named "db"`},
	}
	for _, tt := range tests {
		p, err := imagePatch(spec, tt.prefix, tt.changes)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("imagePatch(%v) error %v, want %q", tt.changes, err, tt.wantErr)
			}
			continue
		}
		if err != nil || string(p) != tt.want {
			t.Errorf("imagePatch(%v) = %s, %v\nwant %s", tt.changes, p, err, tt.want)
		}
	}
	for _, obj := range []api.Object{fixturePods()[0], fixtureDeployment(), fixtureOthers()[api.ReplicaSet][0], fixtureOthers()[api.DaemonSet][0]} {
		if _, _, ok := podSpecOf(obj); !ok {
			t.Errorf("podSpecOf(%T) found no pod spec", obj)
		}
	}
	if _, _, ok := podSpecOf(fixtureConfigMap()); ok {
		t.Errorf("a ConfigMap has a pod spec")
	}
}

func TestRestartPatch(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	want := `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-03-01T12:30:00Z"}}}}}`
	if got := string(restartPatch(at)); got != want {
		t.Errorf("restartPatch = %s, want %s", got, want)
	}
}
