package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
)

// TestRolloutCommands runs rollout history/undo/restart/status, set image
// and cordon/uncordon against a real server, with the ReplicaSets and
// statuses the controllers would write made by the test.
func TestRolloutCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	srv, cl := opsServer(t)
	ctx := context.Background()

	dep := opsDeployment("default", "web", "nginx:1.27", 2, 1)
	dep.Annotations = map[string]string{changeCauseAnnotation: "bump to 1.27", "team": "web"}
	dep = mustCreate(t, cl, api.Deployment, dep)
	old := opsReplicaSet(dep, "5b6c", "1", opsTemplate("web", "nginx:1.26"), 0)
	old.Annotations[changeCauseAnnotation] = "first release"
	mustCreate(t, cl, api.ReplicaSet, old)
	mustCreate(t, cl, api.ReplicaSet, opsReplicaSet(dep, "7d9f", "2", dep.Spec.Template, 2))
	// Neither a ReplicaSet of another deployment nor one without a
	// revision is part of the history.
	other := mustCreate(t, cl, api.Deployment, opsDeployment("default", "other", "redis:8", 1, 1))
	mustCreate(t, cl, api.ReplicaSet, opsReplicaSet(other, "aaaa", "9", other.Spec.Template, 1))

	t.Run("history", func(t *testing.T) {
		want := "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         first release\n2         <none>\n"
		if got := mustRun(t, srv, "rollout", "history", "deployment/web"); got != want {
			t.Errorf("rollout history:\n%q\nwant\n%q", got, want)
		}
		out := mustRun(t, srv, "rollout", "history", "deploy", "web", "--revision", "1")
		for _, s := range []string{"deployment.apps/web with revision #1\nPod Template:\n", "pod-template-hash=5b6c", "kubernetes.io/change-cause: first release", "nginx:1.26"} {
			if !strings.Contains(out, s) {
				t.Errorf("history --revision 1 lacks %q:\n%s", s, out)
			}
		}
		mustFail(t, srv, "", "unable to find the specified revision 5", "rollout", "history", "deployment/web", "--revision", "5")
		mustFail(t, srv, "", "no history viewer has been implemented for DaemonSet", "rollout", "history", "ds/x")
	})

	t.Run("undo", func(t *testing.T) {
		if got := mustRun(t, srv, "rollout", "undo", "deployment/web"); got != "deployment.apps/web rolled back\n" {
			t.Errorf("rollout undo: %q", got)
		}
		d := mustGet[*appsv1.Deployment](t, cl, api.Deployment, "default", "web")
		tmpl := d.Spec.Template
		if tmpl.Spec.Containers[0].Image != "nginx:1.26" || tmpl.Labels[podTemplateHashLabel] != "" || tmpl.Labels["app"] != "web" {
			t.Errorf("after undo: image %s labels %v", tmpl.Spec.Containers[0].Image, tmpl.Labels)
		}
		if d.Annotations[changeCauseAnnotation] != "first release" || d.Annotations["team"] != "web" || d.Generation != 2 {
			t.Errorf("after undo: annotations %v generation %d", d.Annotations, d.Generation)
		}
		// No controller has made a revision 3: the previous revision is
		// still 1, which the deployment now runs.
		if got := mustRun(t, srv, "rollout", "undo", "deployment/web"); got != "deployment.apps/web skipped rollback (current template already matches revision 1)\n" {
			t.Errorf("second undo: %q", got)
		}
		if got := mustRun(t, srv, "rollout", "undo", "deployment", "web", "--to-revision", "2"); got != "deployment.apps/web rolled back\n" {
			t.Errorf("undo --to-revision 2: %q", got)
		}
		d = mustGet[*appsv1.Deployment](t, cl, api.Deployment, "default", "web")
		if d.Spec.Template.Spec.Containers[0].Image != "nginx:1.27" || d.Annotations[changeCauseAnnotation] != "" {
			t.Errorf("after undo to 2: image %s annotations %v", d.Spec.Template.Spec.Containers[0].Image, d.Annotations)
		}
		mustFail(t, srv, "", "unable to find specified revision 7 in history", "rollout", "undo", "deployment/web", "--to-revision", "7")
		mustFail(t, srv, "", "no rollout history found", "rollout", "undo", "deployment/other")
		mustFail(t, srv, "", "no rollbacker has been implemented for DaemonSet", "rollout", "undo", "daemonset/agent")
	})

	t.Run("restart", func(t *testing.T) {
		if got := mustRun(t, srv, "rollout", "restart", "deployment/web"); got != "deployment.apps/web restarted\n" {
			t.Errorf("rollout restart: %q", got)
		}
		d := mustGet[*appsv1.Deployment](t, cl, api.Deployment, "default", "web")
		at, err := time.Parse(time.RFC3339, d.Spec.Template.Annotations[restartedAtAnnotation])
		if err != nil || time.Since(at) > time.Minute {
			t.Errorf("restartedAt %q: %v", d.Spec.Template.Annotations[restartedAtAnnotation], err)
		}
		mustFail(t, srv, "", "replicaset.apps/web-7d9f restarting is not supported", "rollout", "restart", "rs/web-7d9f")
	})

	t.Run("set image", func(t *testing.T) {
		if got := mustRun(t, srv, "set", "image", "deployment/web", "web=nginx:1.28"); got != "deployment.apps/web image updated\n" {
			t.Errorf("set image: %q", got)
		}
		d := mustGet[*appsv1.Deployment](t, cl, api.Deployment, "default", "web")
		if img := d.Spec.Template.Spec.Containers[0].Image; img != "nginx:1.28" {
			t.Errorf("image after set image: %s", img)
		}
		if r := runCLI(t, srv, "", "set", "image", "deployment/web", "*=nginx:1.28"); r.code != 0 || r.stdout != "" {
			t.Errorf("set image to the current image: %+v", r)
		}
		mustFail(t, srv, "", `deployment.apps/web: unable to find container named "db"`, "set", "image", "deployment/web", "db=postgres:17")
		if got := mustRun(t, srv, "set", "image", "rs", "web-7d9f", "*=nginx:1.29"); got != "replicaset.apps/web-7d9f image updated\n" {
			t.Errorf("set image on a replica set: %q", got)
		}
		mustFail(t, srv, "", "at least one image update is required", "set", "image", "deployment/web")
	})

	t.Run("status", func(t *testing.T) {
		setStatus := func(st appsv1.DeploymentStatus) {
			t.Helper()
			d := mustGet[*appsv1.Deployment](t, cl, api.Deployment, "default", "api")
			st.ObservedGeneration = d.Generation
			d.Status = st
			if _, err := cl.UpdateStatus(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		mustCreate(t, cl, api.Deployment, opsDeployment("default", "api", "api:2", 3, 1))
		b := startCLI(t, srv, "rollout", "status", "deployment/api", "--timeout", "1m")
		const wait = `Waiting for deployment "api" rollout to finish: `
		steps := []struct {
			st   appsv1.DeploymentStatus
			line string
		}{
			{appsv1.DeploymentStatus{Replicas: 4, UpdatedReplicas: 1, AvailableReplicas: 3}, wait + "1 out of 3 new replicas have been updated..."},
			{appsv1.DeploymentStatus{Replicas: 4, UpdatedReplicas: 3, AvailableReplicas: 2}, wait + "1 old replicas are pending termination..."},
			{appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 2}, wait + "2 of 3 updated replicas are available..."},
			{appsv1.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3, AvailableReplicas: 3}, `deployment "api" successfully rolled out`},
		}
		b.waitOutput(t, "Waiting for deployment spec update to be observed...")
		want := "Waiting for deployment spec update to be observed...\n"
		for _, s := range steps {
			setStatus(s.st)
			b.waitOutput(t, s.line)
			want += s.line + "\n"
		}
		if code := b.wait(t, 20*time.Second); code != 0 || b.out.String() != want || b.err.String() != "" {
			t.Errorf("rollout status: exit %d\nstdout:\n%s\nwant:\n%s\nstderr:\n%s", code, b.out.String(), want, b.err.String())
		}
		// Complete already: one line, at once.
		if got := mustRun(t, srv, "rollout", "status", "deploy/api"); got != "deployment \"api\" successfully rolled out\n" {
			t.Errorf("status of a finished rollout: %q", got)
		}

		// A rollout that misses its progress deadline fails the command.
		mustCreate(t, cl, api.Deployment, opsDeployment("default", "stuck", "stuck:1", 3, 1))
		b = startCLI(t, srv, "rollout", "status", "deployment/stuck")
		b.waitOutput(t, "Waiting for deployment spec update to be observed...")
		d := mustGet[*appsv1.Deployment](t, cl, api.Deployment, "default", "stuck")
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: 4, UpdatedReplicas: 1, AvailableReplicas: 3,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: progressDeadlineExceeded}}}
		if _, err := cl.UpdateStatus(ctx, d); err != nil {
			t.Fatal(err)
		}
		if code := b.wait(t, 20*time.Second); code != 1 || b.err.String() != "error: deployment \"stuck\" exceeded its progress deadline\n" {
			t.Errorf("progress deadline: exit %d\nstdout:\n%s\nstderr:\n%s", code, b.out.String(), b.err.String())
		}

		// Long enough for the first read (a TLS handshake on a loaded
		// machine) to come back within it; the rollout never finishes.
		r := mustFail(t, srv, "", `timed out waiting for the condition: deployment "web" rollout did not finish within 2s`,
			"rollout", "status", "deployment/web", "--timeout", "2s")
		if r.stdout != "Waiting for deployment spec update to be observed...\n" {
			t.Errorf("status --timeout stdout: %q", r.stdout)
		}
		if r := runCLI(t, srv, "", "rollout", "status", "deployment/web", "--watch=false"); r.code != 0 || r.stdout != "Waiting for deployment spec update to be observed...\n" {
			t.Errorf("status --watch=false: %+v", r)
		}
		mustFail(t, srv, "", `deployments.apps "nope" not found`, "rollout", "status", "deployment/nope")
		mustFail(t, srv, "", "no status viewer has been implemented for ReplicaSet", "rollout", "status", "rs/web-7d9f")
	})

	t.Run("daemonset status", func(t *testing.T) {
		ds := mustCreate(t, cl, api.DaemonSet, &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "default"},
			Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}}, Template: opsTemplate("agent", "agent:1")}})
		b := startCLI(t, srv, "rollout", "status", "ds/agent")
		b.waitOutput(t, "Waiting for daemon set spec update to be observed...")
		ds.Status = appsv1.DaemonSetStatus{ObservedGeneration: ds.Generation, DesiredNumberScheduled: 2, UpdatedNumberScheduled: 2, NumberAvailable: 1}
		ds.ResourceVersion = ""
		if _, err := cl.UpdateStatus(ctx, ds); err != nil {
			t.Fatal(err)
		}
		b.waitOutput(t, `Waiting for daemon set "agent" rollout to finish: 1 of 2 updated pods are available...`)
		ds.Status.NumberAvailable = 2
		if _, err := cl.UpdateStatus(ctx, ds); err != nil {
			t.Fatal(err)
		}
		if code := b.wait(t, 20*time.Second); code != 0 || !strings.HasSuffix(b.out.String(), "daemon set \"agent\" successfully rolled out\n") {
			t.Errorf("daemon set status: exit %d\n%s%s", code, b.out.String(), b.err.String())
		}
	})

	t.Run("cordon", func(t *testing.T) {
		readyNode(t, cl, "n9")
		steps := []struct{ args, want string }{
			{"cordon n9", "node/n9 cordoned\n"},
			{"cordon node/n9", "node/n9 already cordoned\n"},
			{"uncordon nodes/n9", "node/n9 uncordoned\n"},
			{"uncordon n9", "node/n9 already uncordoned\n"},
			{"cordon n9", "node/n9 cordoned\n"},
		}
		for i, s := range steps {
			if got := mustRun(t, srv, strings.Fields(s.args)...); got != s.want {
				t.Errorf("%s: %q, want %q", s.args, got, s.want)
			}
			n := mustGet[*corev1.Node](t, cl, api.Node, "", "n9")
			if want := i != 2 && i != 3; n.Spec.Unschedulable != want {
				t.Errorf("after %s: unschedulable=%v", s.args, n.Spec.Unschedulable)
			}
		}
		if out := mustRun(t, srv, "get", "nodes", "n9"); !strings.Contains(out, "Ready,SchedulingDisabled") {
			t.Errorf("get a cordoned node:\n%s", out)
		}
		mustFail(t, srv, "", `nodes "n404" not found`, "cordon", "n404")
		mustFail(t, srv, "", "NODE or -l SELECTOR is required", "uncordon")
	})

	t.Run("get priorityclasses", func(t *testing.T) {
		out := mustRun(t, srv, "get", "priorityclasses")
		if !strings.HasPrefix(out, "NAME ") || !strings.Contains(out, "PREEMPTIONPOLICY") || !strings.Contains(out, api.SystemNodeCritical) {
			t.Errorf("get priorityclasses:\n%s", out)
		}
		if out := mustRun(t, srv, "get", "pc", api.SystemNodeCritical, "-o", "name"); out != "priorityclass.scheduling.k8s.io/"+api.SystemNodeCritical+"\n" {
			t.Errorf("get pc -o name: %q", out)
		}
	})
}
