package cli

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/agent"
	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/snapfile"
)

const appManifest = `apiVersion: v1
kind: ConfigMap
metadata:
  name: app-config
data:
  color: blue
  size: large
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testClient(t *testing.T, server string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Servers: []string{server}, Token: tokenOf(server), TLS: client.TLS{CAFile: caFileOf(server)}, RetryFor: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestIntegration drives orchctl against a real single-node server.
func TestIntegration(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	srv := testServer(t)
	cl := testClient(t, srv)
	dir := t.TempDir()

	t.Run("apply", func(t *testing.T) {
		f := writeFile(t, dir, "app.yaml", appManifest)
		if got, want := mustRun(t, srv, "apply", "-f", f), "configmap/app-config created\ndeployment.apps/web created\n"; got != want {
			t.Fatalf("first apply:\n%s\nwant:\n%s", got, want)
		}
		if got, want := mustRun(t, srv, "apply", "-f", f), "configmap/app-config unchanged\ndeployment.apps/web unchanged\n"; got != want {
			t.Fatalf("second apply:\n%s\nwant:\n%s", got, want)
		}
		// A label added by someone else survives apply; a key removed from
		// the manifest is removed from the object; a changed value changes.
		mustRun(t, srv, "label", "configmap", "app-config", "owner=ops")
		changed := strings.Replace(strings.Replace(appManifest, "color: blue", "color: green", 1), "  size: large\n", "", 1)
		writeFile(t, dir, "app.yaml", changed)
		if got, want := mustRun(t, srv, "apply", "-f", f), "configmap/app-config configured\ndeployment.apps/web unchanged\n"; got != want {
			t.Fatalf("apply after change:\n%s\nwant:\n%s", got, want)
		}
		obj, err := cl.Get(context.Background(), api.ConfigMap, "default", "app-config", false)
		if err != nil {
			t.Fatal(err)
		}
		cm := obj.(*corev1.ConfigMap)
		if cm.Data["color"] != "green" || cm.Data["size"] != "" || cm.Labels["owner"] != "ops" {
			t.Errorf("after apply: data %v labels %v; want color=green, no size, owner=ops kept", cm.Data, cm.Labels)
		}
		last := cm.Annotations[lastAppliedAnnotation]
		if !strings.Contains(last, `"color":"green"`) || !strings.Contains(last, `"namespace":"default"`) {
			t.Errorf("last-applied annotation %q", last)
		}
		// Directory and stdin input.
		if got := mustRun(t, srv, "apply", "-f", dir); got != "configmap/app-config unchanged\ndeployment.apps/web unchanged\n" {
			t.Errorf("apply -f DIR: %q", got)
		}
		r := runCLI(t, srv, changed, "apply", "-f", "-")
		if r.code != 0 || r.stdout != "configmap/app-config unchanged\ndeployment.apps/web unchanged\n" {
			t.Errorf("apply -f -: %+v", r)
		}
	})

	t.Run("create", func(t *testing.T) {
		f := writeFile(t, t.TempDir(), "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: created\ndata:\n  a: b\n")
		if got := mustRun(t, srv, "create", "-f", f); got != "configmap/created created\n" {
			t.Errorf("create: %q", got)
		}
		mustFail(t, srv, "", `Error from server (AlreadyExists)`, "create", "-f", f)
		// apply takes over an object created without --save-config, warning once.
		r := runCLI(t, srv, "", "apply", "-f", f)
		if r.code != 0 || r.stdout != "configmap/created configured\n" || !strings.Contains(r.stderr, "Warning: configmaps created is missing") {
			t.Errorf("apply over create: %+v", r)
		}
		if r := runCLI(t, srv, "", "apply", "-f", f); r.stdout != "configmap/created unchanged\n" || r.stderr != "" {
			t.Errorf("second apply over create: %+v", r)
		}
		g := writeFile(t, t.TempDir(), "cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: saved\n")
		mustRun(t, srv, "create", "-f", g, "--save-config")
		if r := runCLI(t, srv, "", "apply", "-f", g); r.stdout != "configmap/saved unchanged\n" || r.stderr != "" {
			t.Errorf("apply after create --save-config: %+v", r)
		}
		mustRun(t, srv, "delete", "-f", g)
	})

	t.Run("get", func(t *testing.T) {
		var list struct {
			APIVersion string           `json:"apiVersion"`
			Kind       string           `json:"kind"`
			Items      []map[string]any `json:"items"`
			Metadata   map[string]any   `json:"metadata"`
		}
		out := mustRun(t, srv, "get", "configmaps", "-o", "json")
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("get -o json: %v\n%s", err, out)
		}
		if list.APIVersion != "v1" || list.Kind != "List" || len(list.Items) < 2 || list.Metadata["resourceVersion"] != "" {
			t.Fatalf("get -o json: %s", out)
		}
		for _, it := range list.Items {
			if it["apiVersion"] != "v1" || it["kind"] != "ConfigMap" {
				t.Errorf("item without apiVersion/kind: %v", it)
			}
		}
		if !strings.HasPrefix(out, "{\n    \"apiVersion\": \"v1\",\n    \"items\": [\n") {
			t.Errorf("get -o json is not kubectl's layout:\n%s", out)
		}
		var single map[string]any
		if err := json.Unmarshal([]byte(mustRun(t, srv, "get", "cm/app-config", "-o", "json")), &single); err != nil || single["kind"] != "ConfigMap" {
			t.Errorf("get cm/app-config -o json: %v %v", single, err)
		}
		if got := mustRun(t, srv, "get", "deploy", "-o", "name"); got != "deployment.apps/web\n" {
			t.Errorf("get -o name: %q", got)
		}
		out = mustRun(t, srv, "get", "cm", "app-config")
		if lines := strings.Split(out, "\n"); !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "DATA   AGE") ||
			!strings.HasPrefix(lines[1], "app-config   1 ") {
			t.Errorf("get table:\n%s", out)
		}
		yml := mustRun(t, srv, "get", "deployment", "web", "-o", "yaml")
		if !strings.HasPrefix(yml, "apiVersion: apps/v1\nkind: Deployment\n") {
			t.Errorf("get -o yaml:\n%s", yml)
		}
		// Flags after arguments, including the global -n.
		r := runCLI(t, srv, "", "get", "cm", "-n", "kube-system")
		if r.code != 0 || r.stderr != "No resources found in kube-system namespace.\n" {
			t.Errorf("get cm -n kube-system: %+v", r)
		}
		out = mustRun(t, srv, "get", "ns", "-A")
		if !strings.Contains(out, "kube-system") || !strings.HasPrefix(out, "NAME ") {
			t.Errorf("get ns:\n%s", out)
		}
		out = mustRun(t, srv, "get", "cm,deploy", "-l", "app=web")
		if !strings.Contains(out, "deployment.apps/web") || strings.Contains(out, "app-config") {
			t.Errorf("get cm,deploy -l app=web:\n%s", out)
		}
		out = mustRun(t, srv, "get", "cm", "--show-labels", "--no-headers", "app-config")
		if strings.Contains(out, "NAME") || !strings.Contains(out, "owner=ops") {
			t.Errorf("--show-labels --no-headers:\n%s", out)
		}
		mustFail(t, srv, "", `Error from server (NotFound): configmaps "nope" not found`, "get", "cm", "nope")
		mustFail(t, srv, "", `error: the server doesn't have a resource type "foo"`, "get", "foo")
	})

	t.Run("label", func(t *testing.T) {
		if got := mustRun(t, srv, "label", "cm", "app-config", "tier=front"); got != "configmap/app-config labeled\n" {
			t.Errorf("label: %q", got)
		}
		mustFail(t, srv, "", `error: 'tier' already has a value (front), and --overwrite is false`, "label", "cm/app-config", "tier=back")
		if got := mustRun(t, srv, "label", "cm/app-config", "tier=back", "--overwrite"); got != "configmap/app-config labeled\n" {
			t.Errorf("label --overwrite: %q", got)
		}
		if got := mustRun(t, srv, "label", "cm", "app-config", "tier-"); got != "configmap/app-config labeled\n" {
			t.Errorf("label removal: %q", got)
		}
		if got := mustRun(t, srv, "label", "cm", "app-config", "tier-"); got != "configmap/app-config not labeled\n" {
			t.Errorf("label removal again: %q", got)
		}
		obj, _ := cl.Get(context.Background(), api.ConfigMap, "default", "app-config", false)
		if _, ok := obj.GetLabels()["tier"]; ok {
			t.Errorf("label tier still set: %v", obj.GetLabels())
		}
		mustFail(t, srv, "", "at least one label update is required", "label", "cm", "app-config")
	})

	t.Run("scale", func(t *testing.T) {
		if got := mustRun(t, srv, "scale", "deployment/web", "--replicas", "3"); got != "deployment.apps/web scaled\n" {
			t.Errorf("scale: %q", got)
		}
		obj, _ := cl.Get(context.Background(), api.Deployment, "default", "web", false)
		if b, _ := json.Marshal(obj); !strings.Contains(string(b), `"replicas":3`) {
			t.Errorf("after scale: %s", b)
		}
	})

	t.Run("describe", func(t *testing.T) {
		out := mustRun(t, srv, "describe", "cm", "app-config")
		for _, want := range []string{"Name:", "app-config", "Namespace:", "default", "Labels:", "owner=ops", "Data\n====\ncolor:\n----\ngreen\n", "Events:", "<none>"} {
			if !strings.Contains(out, want) {
				t.Errorf("describe cm lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, lastAppliedAnnotation) {
			t.Errorf("describe shows the last-applied annotation:\n%s", out)
		}
		ev := &corev1.Event{
			TypeMeta:       metav1.TypeMeta{APIVersion: "v1", Kind: "Event"},
			ObjectMeta:     metav1.ObjectMeta{Name: "web.1", Namespace: "default"},
			InvolvedObject: corev1.ObjectReference{Kind: "Deployment", Namespace: "default", Name: "web", APIVersion: "apps/v1"},
			Reason:         "ScalingReplicaSet", Message: "Scaled up replica set web-1 to 3", Type: corev1.EventTypeNormal,
			Source: corev1.EventSource{Component: "deployment-controller"}, Count: 1,
			FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(),
		}
		if _, err := cl.Create(context.Background(), ev); err != nil {
			t.Fatalf("creating event: %v", err)
		}
		out = mustRun(t, srv, "describe", "deployment/web")
		for _, want := range []string{"Replicas:", "3 desired", "StrategyType:", "Pod Template:", "nginx:1.27", "Events:", "ScalingReplicaSet", "deployment-controller", "Scaled up replica set web-1 to 3"} {
			if !strings.Contains(out, want) {
				t.Errorf("describe deployment lacks %q:\n%s", want, out)
			}
		}
		out = mustRun(t, srv, "get", "events")
		if !strings.HasPrefix(out, "LAST SEEN") || !strings.Contains(out, "deployment/web") {
			t.Errorf("get events:\n%s", out)
		}
	})

	t.Run("bad input writes nothing", func(t *testing.T) {
		d := t.TempDir()
		good := "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: should-not-exist\n"
		bad := writeFile(t, d, "bad.yaml", good+"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [oops\n")
		mustFail(t, srv, "", "document 2", "apply", "-f", bad)
		unknownKind := writeFile(t, d, "kind.yaml", good+"---\napiVersion: v1\nkind: Gizmo\nmetadata:\n  name: g\n")
		mustFail(t, srv, "", `unknown kind "Gizmo"`, "apply", "-f", unknownKind)
		unknownField := writeFile(t, d, "field.yaml", good+"---\n"+strings.Replace(appManifest[strings.Index(appManifest, "apiVersion: apps/v1"):], "        image:", "        imagePullPolicyy: Always\n        image:", 1))
		mustFail(t, srv, "", "spec.template.spec.containers[0].imagePullPolicyy", "apply", "-f", unknownField)
		invalid := writeFile(t, d, "invalid.yaml", good+"---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n")
		mustFail(t, srv, "", "metadata.name", "apply", "-f", invalid)
		if _, err := cl.Get(context.Background(), api.ConfigMap, "default", "should-not-exist", false); err == nil {
			t.Errorf("a failed apply created the first object")
		}
		mustFail(t, srv, "", `the path "nope.yaml" does not exist`, "apply", "-f", "nope.yaml")
		mustFail(t, srv, "", "-f/--filename is required", "apply")
	})

	t.Run("delete", func(t *testing.T) {
		if got := mustRun(t, srv, "delete", "cm", "created"); got != "configmap \"created\" deleted\n" {
			t.Errorf("delete: %q", got)
		}
		mustFail(t, srv, "", `Error from server (NotFound): configmaps "created" not found`, "delete", "cm/created")
		if r := runCLI(t, srv, "", "delete", "cm", "created", "--ignore-not-found"); r.code != 0 || r.stderr != "" {
			t.Errorf("delete --ignore-not-found: %+v", r)
		}
		for _, n := range []string{"x1", "x2"} {
			cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "default", Labels: map[string]string{"batch": "x"}}}
			if _, err := cl.Create(context.Background(), cm); err != nil {
				t.Fatal(err)
			}
		}
		if got := mustRun(t, srv, "delete", "cm", "-l", "batch=x"); got != "configmap \"x1\" deleted\nconfigmap \"x2\" deleted\n" {
			t.Errorf("delete -l: %q", got)
		}
		f := filepath.Join(dir, "app.yaml")
		if got := mustRun(t, srv, "delete", "-f", f, "--cascade=orphan"); got != "configmap \"app-config\" deleted\ndeployment.apps \"web\" deleted\n" {
			t.Errorf("delete -f: %q", got)
		}
		mustFail(t, srv, "", `--cascade "sideways"`, "delete", "cm", "x", "--cascade", "sideways")

		// A running pod is only marked for deletion: its node confirms
		// (none runs here). --force removes it at once, with a warning.
		readyNode(t, cl, "grace-node")
		mustRunningPod(t, cl, "default", "graceful-1", "grace-node", nil)
		mustRun(t, srv, "delete", "pod", "graceful-1", "--grace-period", "30")
		obj, err := cl.Get(context.Background(), api.Pod, "default", "graceful-1", false)
		if err != nil {
			t.Fatalf("the pod went without its node's confirmation: %v", err)
		}
		if p := obj.(*corev1.Pod); p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 {
			t.Errorf("delete --grace-period 30: deletionTimestamp %v, grace %v; want set, 30", p.DeletionTimestamp, p.DeletionGracePeriodSeconds)
		}
		r := runCLI(t, srv, "", "delete", "pod", "graceful-1", "--force")
		if r.code != 0 || r.stdout != "pod \"graceful-1\" deleted\n" || !strings.Contains(r.stderr, "Warning: immediate deletion") {
			t.Errorf("delete --force: %+v", r)
		}
		if _, err := cl.Get(context.Background(), api.Pod, "default", "graceful-1", false); !apierrors.IsNotFound(err) {
			t.Errorf("after delete --force: %v, want NotFound", err)
		}
		mustFail(t, srv, "", "--grace-period -2: must be -1", "delete", "pod", "x", "--grace-period", "-2")
		mustFail(t, srv, "", "--now and --grace-period cannot both be given", "delete", "pod", "x", "--now", "--grace-period", "5")
	})

	t.Run("members and peers", func(t *testing.T) {
		var members []map[string]any
		out := mustRun(t, srv, "members", "-o", "json")
		if err := json.Unmarshal([]byte(out), &members); err != nil || len(members) != 1 {
			t.Fatalf("members -o json: %v\n%s", err, out)
		}
		keys := slices.Sorted(maps.Keys(members[0]))
		if !slices.Equal(keys, []string{"address", "name", "role", "status"}) || members[0]["name"] != "t1" ||
			members[0]["role"] != "server" || members[0]["status"] != "alive" {
			t.Errorf("members -o json: %s", out)
		}
		if out := mustRun(t, srv, "members"); !strings.HasPrefix(out, "NAME   ADDRESS") || !strings.Contains(out, "t1 ") {
			t.Errorf("members:\n%s", out)
		}
		var peers []map[string]any
		out = mustRun(t, srv, "operator", "raft", "list-peers", "-o", "json")
		if err := json.Unmarshal([]byte(out), &peers); err != nil || len(peers) != 1 {
			t.Fatalf("list-peers -o json: %v\n%s", err, out)
		}
		// DESIGN.md's id, address, leader and voter, then the leader's view of its health.
		keys = slices.Sorted(maps.Keys(peers[0]))
		if !slices.Equal(keys, []string{"address", "appliedIndex", "healthy", "id", "lag", "lastContactMs", "leader", "status", "voter"}) ||
			peers[0]["id"] != "t1" || peers[0]["leader"] != true || peers[0]["voter"] != true || peers[0]["healthy"] != true {
			t.Errorf("list-peers -o json: %s", out)
		}
		out = mustRun(t, srv, "operator", "raft", "list-peers")
		if !strings.HasPrefix(out, "NODE   ID    ADDRESS") || !strings.Contains(out, "leader   true    healthy") || !strings.Contains(out, "LAST CONTACT") {
			t.Errorf("list-peers:\n%s", out)
		}
		if got := mustRun(t, srv, "operator", "raft", "transfer-leader", "--to", "t1"); got != "leadership transferred to t1\n" {
			t.Errorf("transfer-leader: %q", got)
		}
		mustFail(t, srv, "", "Error from server (NotFound)", "operator", "raft", "remove-peer", "nobody")
	})

	t.Run("snapshot save", func(t *testing.T) {
		// Enough incompressible state that the download spans many reads.
		for i := range 24 {
			buf := make([]byte, 24<<10)
			rand.Read(buf)
			cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: metav1.ObjectMeta{Name: "bulk-" + strconv.Itoa(i), Namespace: "snap"}, BinaryData: map[string][]byte{"b": buf}}
			if i == 0 {
				ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: "snap"}}
				if _, err := cl.Create(context.Background(), ns); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := cl.Create(context.Background(), cm); err != nil {
				t.Fatal(err)
			}
		}
		file := filepath.Join(t.TempDir(), "backup.snap")
		out := mustRun(t, srv, "operator", "snapshot", "save", file)
		st, err := os.Stat(file)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(file)
		defer f.Close()
		meta, err := snapfile.Read(f, io.Discard)
		if err != nil {
			t.Fatalf("saved snapshot does not verify: %v", err)
		}
		want := "Saved snapshot at index " + strconv.FormatUint(meta.Index, 10) + " to " + file + " (" + strconv.FormatInt(st.Size(), 10) + " bytes)\n"
		if out != want || meta.Index == 0 || st.Size() < 500<<10 {
			t.Errorf("snapshot save printed %q, want %q", out, want)
		}
		if _, err := os.Stat(file + ".tmp"); !os.IsNotExist(err) {
			t.Errorf("temporary file left behind: %v", err)
		}
		if out := mustRun(t, srv, "operator", "snapshot", "inspect", file); !strings.Contains(out, "t1") {
			t.Errorf("snapshot inspect:\n%s", out)
		}
	})

	t.Run("version", func(t *testing.T) {
		out := mustRun(t, srv, "version")
		want := "Client Version: " + clientVersion() + "\nServer Version: v1." + agent.KubernetesMinor + ".0-orch+dev\n"
		if out != want {
			t.Errorf("version:\n%s\nwant:\n%s", out, want)
		}
		if kubernetesMinor != agent.KubernetesMinor {
			t.Errorf("cli.kubernetesMinor %s != agent.KubernetesMinor %s", kubernetesMinor, agent.KubernetesMinor)
		}
	})

	t.Run("watch", func(t *testing.T) {
		before := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "before", Namespace: "default"}}
		if _, err := cl.Create(context.Background(), before); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errb syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- Run(ctx, append([]string{"orchctl", "get", "configmaps", "-w", "--server", srv}, caArgs(srv)...), strings.NewReader(""), &out, &errb)
		}()
		cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: "watched", Namespace: "default"}, Data: map[string]string{"k": "v"}}
		if _, err := cl.Create(context.Background(), cm); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, func() bool { return strings.Contains(out.String(), "watched ") }, func() string { return out.String() + errb.String() })
		lines := strings.Split(out.String(), "\n")
		if !strings.HasPrefix(lines[0], "NAME ") || !strings.HasPrefix(lines[1], "before ") || !strings.HasPrefix(lines[2], "watched ") {
			t.Errorf("watch output:\n%s", out.String())
		}
		if err := cl.Delete(context.Background(), api.ConfigMap, "default", "watched", client.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 15*time.Second, func() bool { return strings.Count(out.String(), "watched ") == 2 }, func() string { return out.String() + errb.String() })
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("watch exited %d: %s", code, errb.String())
			}
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not end after its context was cancelled")
		}
	})
}

// TestUnreachable checks that a dead server list fails fast with one line.
func TestUnreachable(t *testing.T) {
	start := time.Now()
	r := mustFail(t, "http://127.0.0.1:1,http://127.0.0.1:2", "", "no orch server answered (http://127.0.0.1:1, http://127.0.0.1:2)",
		"get", "pods", "--request-timeout", "1s")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s with --request-timeout 1s", d)
	}
	if r.stdout != "" {
		t.Errorf("stdout: %q", r.stdout)
	}
	r = runCLI(t, "http://127.0.0.1:1", "", "version", "--request-timeout", "1s")
	if r.code != 1 || r.stdout != "Client Version: "+clientVersion()+"\n" || !strings.HasPrefix(r.stderr, "error: no orch server answered") {
		t.Errorf("version against a dead server: %+v", r)
	}
	mustFail(t, "", "", "no orch server given", "get", "pods")
}

func waitFor(t *testing.T, limit time.Duration, cond func() bool, show func() string) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s; output:\n%s", limit, show())
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}
