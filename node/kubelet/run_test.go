package kubelet

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/node/runtime"
)

// A pod with two containers, environment from every kind of source,
// volumes of every kind and resources starts with exactly the runtime
// configuration Kubernetes would give it, and its status says Running and
// Ready with everything a user looks at.
func TestRunsPodWithConfiguration(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		h.cl.cms["default/cfg"] = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg", Namespace: "default"},
			Data: map[string]string{"greeting": "hello", "color": "blue", "9lives": "skipped"}}
		h.cl.secrets["default/creds"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "creds", Namespace: "default"},
			Data: map[string][]byte{"password": []byte("s3cret")}}
		hostDir := filepath.Join(t.TempDir(), "host")
		p := pod("web", "app", "sidecar")
		p.Labels = map[string]string{"app": "web"}
		p.Spec.Volumes = []corev1.Volume{
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: hostDir, Type: ptr(corev1.HostPathDirectoryOrCreate)}}},
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"},
				Items:                []corev1.KeyToPath{{Key: "greeting", Path: "sub/greeting.txt"}}}}},
			{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "creds"}}},
		}
		app := &p.Spec.Containers[0]
		app.Command, app.Args, app.WorkingDir = []string{"/bin/web"}, []string{"--name=$(POD_NAME)", "$$(literal)", "$(UNKNOWN)"}, "/srv"
		app.EnvFrom = []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}},
			{Prefix: "S_", SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}}}}
		app.Env = []corev1.EnvVar{
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
			{Name: "POD_NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
			{Name: "POD_UID", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.uid"}}},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "NODE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
			{Name: "APP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels['app']"}}},
			{Name: "GREETING", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "greeting"}}},
			{Name: "PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "creds"}, Key: "password"}}},
			{Name: "MAYBE", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "absent", Optional: ptr(true)}}},
			{Name: "color", Value: "red, was $(color)"},
		}
		app.VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}, {Name: "config", MountPath: "/etc/cfg", ReadOnly: true},
			{Name: "secret", MountPath: "/etc/creds"}, {Name: "host", MountPath: "/host"}}
		app.Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")}}
		p.Spec.Containers[1].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/shared", SubPath: "out"}}
		created := h.cl.create(p)
		h.start()
		h.waitFor(time.Second, "pod Ready", func() bool { return h.ready("web") })

		run := h.rt.running()
		appCfg := h.rt.config(run["web/app"].ID)
		podIP := h.status("web").PodIP
		wantEnv := []string{"color=red, was blue", "greeting=hello", "S_password=s3cret", "POD_NAME=web", "POD_NS=default", "POD_UID=" + string(created.UID),
			"POD_IP=" + podIP, "NODE=n1", "APP=web", "GREETING=hello", "PASSWORD=s3cret"}
		if !slices.Equal(appCfg.Env, wantEnv) {
			t.Errorf("env\n got %q\nwant %q", appCfg.Env, wantEnv)
		}
		if !slices.Equal(appCfg.Command, []string{"/bin/web"}) || !slices.Equal(appCfg.Args, []string{"--name=web", "$(literal)", "$(UNKNOWN)"}) || appCfg.WorkingDir != "/srv" {
			t.Errorf("command %q args %q workingDir %q", appCfg.Command, appCfg.Args, appCfg.WorkingDir)
		}
		if appCfg.Resources != (runtime.Resources{CPURequestMilli: 250, CPULimitMilli: 1000, MemoryLimitBytes: 64 << 20}) {
			t.Errorf("resources %+v", appCfg.Resources)
		}
		vols := filepath.Join(h.dir, "pods", string(created.UID), "volumes")
		wantMounts := []runtime.Mount{{HostPath: vols + "/scratch", ContainerPath: "/scratch"}, {HostPath: vols + "/config", ContainerPath: "/etc/cfg", ReadOnly: true},
			{HostPath: vols + "/secret", ContainerPath: "/etc/creds"}, {HostPath: hostDir, ContainerPath: "/host"}}
		if !slices.Equal(appCfg.Mounts, wantMounts) {
			t.Errorf("mounts\n got %+v\nwant %+v", appCfg.Mounts, wantMounts)
		}
		side := h.rt.config(run["web/sidecar"].ID)
		if !slices.Equal(side.Mounts, []runtime.Mount{{HostPath: vols + "/scratch/out", ContainerPath: "/shared"}}) {
			t.Errorf("sidecar mounts %+v", side.Mounts)
		}
		checkFile(t, vols+"/config/sub/greeting.txt", "hello", 0o644)
		if _, err := os.Stat(vols + "/config/color"); !os.IsNotExist(err) {
			t.Errorf("configMap key not listed in items was written: %v", err)
		}
		checkFile(t, vols+"/secret/password", "s3cret", 0o400)
		if st, err := os.Stat(hostDir); err != nil || !st.IsDir() {
			t.Errorf("hostPath DirectoryOrCreate not created: %v", err)
		}

		st := h.status("web")
		if st.Phase != corev1.PodRunning || st.HostIP != "192.0.2.1" || !strings.HasPrefix(st.PodIP, "10.244.0.") || st.StartTime == nil {
			t.Errorf("status %+v", st)
		}
		for _, c := range []corev1.PodConditionType{corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady} {
			if condition(st, c) != corev1.ConditionTrue {
				t.Errorf("condition %s = %q", c, condition(st, c))
			}
		}
		for _, cs := range st.ContainerStatuses {
			if cs.State.Running == nil || !cs.Ready || cs.Started == nil || !*cs.Started || cs.RestartCount != 0 ||
				cs.ContainerID != "containerd://"+run["web/"+cs.Name].ID || cs.ImageID != run["web/"+cs.Name].ImageID || cs.ImageID == "" || cs.Image != img {
				t.Errorf("container status %+v", cs)
			}
		}
	})
}

func checkFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil || string(b) != content {
		t.Errorf("%s: %q, %v; want %q", path, b, err, content)
		return
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), mode)
	}
}

// Status is written once per change: a pod that starts and stays up is
// written a handful of times, never once per sync; while writes are held
// up, changes coalesce into one write of the newest status.
func TestStatusWritesCoalesce(t *testing.T) {
	run(t, func(t *testing.T, h *harness) {
		p := pod("web", "app")
		p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"ready"}}},
			PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 1}
		var ready atomic.Bool
		ready.Store(true)
		h.rt.setExec(func([]string) int {
			if ready.Load() {
				return 0
			}
			return 1
		})
		created := h.cl.create(p)
		h.start()
		h.waitFor(time.Second, "pod Ready", func() bool { return h.ready("web") })
		time.Sleep(time.Minute) // six resyncs and sixty probes
		settle()
		if n := len(h.cl.statusWrites(created.UID)); n > 3 {
			t.Fatalf("%d status writes for a pod that started once", n)
		}
		before := len(h.cl.statusWrites(created.UID))

		gate := make(chan struct{})
		h.cl.mu.Lock()
		h.cl.gate = gate
		h.cl.mu.Unlock()
		// Flip readiness four times while the API holds writes up: the
		// first change is in flight, the next three collapse into one.
		for range 4 {
			ready.Store(!ready.Load())
			time.Sleep(time.Second)
			settle()
		}
		h.cl.mu.Lock()
		h.cl.gate = nil
		h.cl.mu.Unlock()
		close(gate)
		settle()
		writes := h.cl.statusWrites(created.UID)
		if n := len(writes) - before; n != 2 {
			t.Fatalf("%d writes after four changes held up, want 2 (the first, then the newest)", n)
		}
		if condition(writes[len(writes)-1], corev1.PodReady) != corev1.ConditionTrue {
			t.Fatalf("last write is not the newest status: %+v", writes[len(writes)-1].Conditions)
		}
	})
}
