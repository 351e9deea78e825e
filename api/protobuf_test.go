package api

import (
	"bytes"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

func TestProtoRoundTripAndList(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "default", ResourceVersion: "7"}, Data: map[string]string{"k": "v"}}
	ConfigMap.SetTypeMeta(cm)
	b, err := EncodeProto(ConfigMap, cm)
	if err != nil || !bytes.HasPrefix(b, []byte("k8s\x00")) {
		t.Fatalf("%v %q", err, b)
	}
	got, err := DecodeProto(ConfigMap, b)
	if err != nil || !apiequality.Semantic.DeepEqual(got, cm) {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	if _, err := DecodeProto(Secret, b); err == nil {
		t.Fatal("a ConfigMap body decoded as a Secret")
	}
	if _, err := DecodeProto(ConfigMap, []byte("{}")); err == nil {
		t.Fatal("JSON accepted as protobuf")
	}
	lb, err := EncodeProtoList(ConfigMap, metav1.ListMeta{ResourceVersion: "9", Continue: "c"}, []Object{cm, cm})
	if err != nil {
		t.Fatal(err)
	}
	meta, items, err := DecodeProtoList(ConfigMap, lb)
	if err != nil || meta.ResourceVersion != "9" || meta.Continue != "c" || len(items) != 2 || items[1].GetName() != "a" {
		t.Fatalf("list: %v %+v %d", err, meta, len(items))
	}
	if !IsProtobuf("application/vnd.kubernetes.protobuf, application/json") || IsProtobuf("application/json") {
		t.Fatal("IsProtobuf")
	}
}

// What orch writes is what Kubernetes' own protobuf serializer reads.
func TestProtoMatchesKubernetesSerializer(t *testing.T) {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	ser := protobuf.NewSerializer(s, s)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "default"}, Data: map[string]string{"k": "v"}}
	ConfigMap.SetTypeMeta(cm)
	ours, _ := EncodeProto(ConfigMap, cm)
	obj, _, err := ser.Decode(ours, nil, nil)
	if err != nil || obj.(*corev1.ConfigMap).Data["k"] != "v" {
		t.Fatalf("Kubernetes cannot read orch's encoding: %v", err)
	}
	var theirs bytes.Buffer
	if err := ser.Encode(cm, &theirs); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ours, theirs.Bytes()) {
		t.Fatalf("encodings differ:\n ours %q\ntheirs %q", ours, theirs.Bytes())
	}
	back, err := DecodeProto(ConfigMap, theirs.Bytes())
	if err != nil || back.GetName() != "a" {
		t.Fatalf("orch cannot read Kubernetes' encoding: %v", err)
	}
}
