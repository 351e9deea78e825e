package multihost

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/testcluster"
	"orch.dev/orch/node/runtime/imagebuild"
	"orch.dev/orch/node/worker/execstream"
)

// webPod is the web test server bound to node, labelled app=web, with its
// port declared as "http" and a readiness probe that fails while
// /tmp/unready exists (checked every second, one failure is enough).
func webPod(name, node string) *corev1.Pod {
	zero := int64(0)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: &zero, Containers: []corev1.Container{{
			Name: "web", Image: imagebuild.TestImageRef("web"), ImagePullPolicy: corev1.PullNever,
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
			Env:   []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/readyz", Port: intstr.FromInt32(8080)}},
				PeriodSeconds: 1, FailureThreshold: 1},
		}}}}
	api.Pod.SetTypeMeta(p)
	return p
}

// clientPod runs nothing but a shell waiting for execs (busybox: sh,
// wget, and `busybox nslookup`), with the cluster DNS as its resolver.
func clientPod(name, node string) *corev1.Pod {
	zero := int64(0)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": "client"}},
		Spec: corev1.PodSpec{NodeName: node, TerminationGracePeriodSeconds: &zero, Containers: []corev1.Container{{
			Name: "client", Image: imagebuild.TestImageRef("web"), ImagePullPolicy: corev1.PullNever,
			Command: []string{"/bin/sleep", "3600"},
		}}}}
	api.Pod.SetTypeMeta(p)
	return p
}

func service(name string, mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}}}}
	if mutate != nil {
		mutate(s)
	}
	api.Service.SetTypeMeta(s)
	return s
}

// containerOf names the one container of the test's pods.
func containerOf(pod string) string {
	if strings.HasPrefix(pod, "client") {
		return "client"
	}
	return "web"
}

// execStream runs cmd in the pod's container through the API (as `orchctl
// exec` does: the server passes it to the pod's worker), copying stdout and
// stderr as they come. It returns the exit code.
func execStream(ctx context.Context, cl *client.Client, pod string, stdout, stderr io.Writer, cmd ...string) (int, error) {
	q := url.Values{"container": {containerOf(pod)}, "command": cmd, "stdout": {"true"}, "stderr": {"true"}}
	resp, err := cl.Do(ctx, client.Request{Method: http.MethodPost, Path: api.Pod.Path("default") + "/" + pod + "/exec",
		Query: q, Stream: true, NoResend: true})
	if err != nil {
		return 0, err
	}
	defer resp.Stream.Close()
	return execstream.Read(resp.Stream, stdout, stderr)
}

// execOut runs cmd in the pod and returns its exit code and combined output.
func execOut(ctx context.Context, cl *client.Client, pod string, cmd ...string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	code, err := execStream(ctx, cl, pod, &out, &out, cmd...)
	return code, out.String(), err
}

// lineWriter calls fn with each complete line written to it and the time
// it arrived.
type lineWriter struct {
	buf []byte
	fn  func(line string, at time.Time)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	now := time.Now()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.fn(string(w.buf[:i]), now)
		w.buf = w.buf[i+1:]
	}
}

// answeredBy returns the pod names in a web server's answers
// ("hello from NAME (hostname ...)"), in order.
func answeredBy(out string) []string {
	var names []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "hello from "); ok {
			name, _, _ := strings.Cut(rest, " ")
			names = append(names, name)
		}
	}
	return names
}

// nftChains lists the chains of the proxy's table (ip orch-proxy) in a
// worker's network namespace.
func nftChains(nsPath string) (map[string]bool, error) {
	n, err := testcluster.OpenNFT(nsPath)
	if err != nil {
		return nil, err
	}
	defer n.Close()
	chains, err := n.Chains("orch-proxy")
	if err == nil && len(chains) == 0 {
		err = errors.New("no table ip orch-proxy (or an empty one)")
	}
	return chains, err
}
