package api

import (
	"bytes"
	"fmt"
	"mime"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// ProtobufContentType is Kubernetes' binary wire format: the "k8s\x00"
// magic, then a runtime.Unknown envelope (apiVersion, kind) around the
// object's protobuf encoding. Go clients use it to spare both ends the cost
// of JSON; kubectl and curl keep JSON.
const ProtobufContentType = "application/vnd.kubernetes.protobuf"

var protoMagic = []byte("k8s\x00")

// IsProtobuf reports whether a Content-Type or Accept header asks for
// protobuf (Accept may list several types; the first one decides).
func IsProtobuf(header string) bool {
	first, _, _ := strings.Cut(header, ",")
	mt, _, err := mime.ParseMediaType(strings.TrimSpace(first))
	return err == nil && mt == ProtobufContentType
}

// EncodeProto wraps obj of kind k in the protobuf envelope.
func EncodeProto(k *Kind, obj Object) ([]byte, error) {
	raw, err := obj.Marshal()
	if err != nil {
		return nil, err
	}
	return envelope(k.APIVersion(), k.Kind, raw)
}

func envelope(apiVersion, kind string, raw []byte) ([]byte, error) {
	u := runtime.Unknown{TypeMeta: runtime.TypeMeta{APIVersion: apiVersion, Kind: kind}, Raw: raw}
	b, err := u.Marshal()
	if err != nil {
		return nil, err
	}
	return append(append(make([]byte, 0, len(protoMagic)+len(b)), protoMagic...), b...), nil
}

// DecodeProto reads an object of kind k from the protobuf envelope.
func DecodeProto(k *Kind, data []byte) (Object, error) {
	u, err := openEnvelope(data)
	if err != nil {
		return nil, err
	}
	if u.Kind != "" && u.Kind != k.Kind {
		return nil, fmt.Errorf("kind: expected %q, got %q", k.Kind, u.Kind)
	}
	if u.APIVersion != "" && u.APIVersion != k.APIVersion() {
		return nil, fmt.Errorf("apiVersion: expected %q for kind %s, got %q", k.APIVersion(), k.Kind, u.APIVersion)
	}
	return k.Decode(u.Raw)
}

func openEnvelope(data []byte) (*runtime.Unknown, error) {
	if !bytes.HasPrefix(data, protoMagic) {
		return nil, fmt.Errorf("not a %s body (missing the k8s magic)", ProtobufContentType)
	}
	var u runtime.Unknown
	if err := u.Unmarshal(data[len(protoMagic):]); err != nil {
		return nil, fmt.Errorf("invalid protobuf envelope: %w", err)
	}
	if u.ContentEncoding != "" || (u.ContentType != "" && u.ContentType != ProtobufContentType) {
		return nil, fmt.Errorf("unsupported protobuf envelope content %q/%q", u.ContentType, u.ContentEncoding)
	}
	return &u, nil
}

// EncodeProtoList builds the protobuf form of a list (kind k + "List") from
// its items' protobuf encodings: field 1 is the ListMeta, field 2 each item,
// as in the generated list types.
func EncodeProtoList(k *Kind, meta metav1.ListMeta, items [][]byte) ([]byte, error) {
	mb, err := meta.Marshal()
	if err != nil {
		return nil, err
	}
	size := len(mb) + 8
	for _, it := range items {
		size += len(it) + 8
	}
	raw := make([]byte, 0, size)
	raw = protowire.AppendTag(raw, 1, protowire.BytesType)
	raw = protowire.AppendBytes(raw, mb)
	for _, it := range items {
		raw = protowire.AppendTag(raw, 2, protowire.BytesType)
		raw = protowire.AppendBytes(raw, it)
	}
	return envelope(k.APIVersion(), k.ListKind(), raw)
}

// DecodeProtoList reads a list of kind k; it returns the list metadata and
// the items.
func DecodeProtoList(k *Kind, data []byte) (metav1.ListMeta, []Object, error) {
	var meta metav1.ListMeta
	u, err := openEnvelope(data)
	if err != nil {
		return meta, nil, err
	}
	if u.Kind != k.ListKind() {
		return meta, nil, fmt.Errorf("kind: expected %q, got %q", k.ListKind(), u.Kind)
	}
	var items []Object
	b := u.Raw
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return meta, nil, fmt.Errorf("invalid %s encoding", k.ListKind())
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return meta, nil, fmt.Errorf("invalid %s encoding", k.ListKind())
		}
		b = b[n:]
		switch num {
		case 1:
			if err := meta.Unmarshal(v); err != nil {
				return meta, nil, err
			}
		case 2:
			obj, err := k.Decode(v)
			if err != nil {
				return meta, nil, err
			}
			items = append(items, obj)
		}
	}
	return meta, items, nil
}
