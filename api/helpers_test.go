package api

import (
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var webLabels = map[string]string{"app": "web"}

func webPodSpec() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27",
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}
}

func webTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: webPodSpec()}
}

// validObjects returns one minimal valid object of every kind, before
// defaulting.
func validObjects() map[*Kind]Object {
	m := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name, Namespace: "prod"} }
	return map[*Kind]Object{
		Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "prod"}},
		ConfigMap: &corev1.ConfigMap{ObjectMeta: m("cfg"), Data: map[string]string{"app.conf": "x=1", "KEY_2": "y"}},
		Secret:    &corev1.Secret{ObjectMeta: m("creds"), Data: map[string][]byte{"password": []byte("hunter2")}},
		Pod:       &corev1.Pod{ObjectMeta: m("web"), Spec: webPodSpec()},
		ReplicaSet: &appsv1.ReplicaSet{ObjectMeta: m("web-1"), Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Template: webTemplate()}},
		Deployment: &appsv1.Deployment{ObjectMeta: m("web"), Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Template: webTemplate()}},
		DaemonSet: &appsv1.DaemonSet{ObjectMeta: m("agent"), Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}, Template: webTemplate()}},
		Service: &corev1.Service{ObjectMeta: m("web"), Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}},
		Endpoints: &corev1.Endpoints{ObjectMeta: m("web"), Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: "10.244.0.5"}}, Ports: []corev1.EndpointPort{{Name: "http", Port: 8080}}}}},
		Node: &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"}},
		Event: &corev1.Event{ObjectMeta: m("web.17a"), Reason: "Started", Type: corev1.EventTypeNormal,
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "prod", Name: "web"}},
	}
}

// valid returns a defaulted valid object of kind k.
func valid[T Object](k *Kind) T {
	obj := validObjects()[k]
	Default(k, obj)
	return obj.(T)
}

// errPaths renders an error list as sorted "path: Type" strings.
func errPaths(errs field.ErrorList) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Field + ": " + string(e.Type)
	}
	sort.Strings(out)
	return out
}

func join(s []string) string { return strings.Join(s, "\n") }
