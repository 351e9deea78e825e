package api

import (
	"bytes"
	"fmt"
	"mime"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// sizedMarshaler is what the generated Kubernetes types offer to marshal
// into a buffer of exactly the right size.
type sizedMarshaler interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

// EncodeProto wraps obj of kind k in the protobuf envelope, with one
// allocation: the object is marshalled in place.
func EncodeProto(k *Kind, obj Object) ([]byte, error) {
	sm := obj.(sizedMarshaler)
	n := sm.Size()
	return envelope(k.APIVersion(), k.Kind, n, func(buf []byte) error {
		_, err := sm.MarshalToSizedBuffer(buf)
		return err
	})
}

// envelope writes the magic and a runtime.Unknown whose raw field is rawLen
// bytes filled by fill, field for field as Kubernetes' encoder does.
func envelope(apiVersion, kind string, rawLen int, fill func([]byte) error) ([]byte, error) {
	tmLen := protowire.SizeTag(1) + protowire.SizeBytes(len(apiVersion)) + protowire.SizeTag(2) + protowire.SizeBytes(len(kind))
	total := len(protoMagic) + protowire.SizeTag(1) + protowire.SizeBytes(tmLen) +
		protowire.SizeTag(2) + protowire.SizeBytes(rawLen) + 2*(protowire.SizeTag(3)+protowire.SizeBytes(0))
	b := make([]byte, 0, total)
	b = append(b, protoMagic...)
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(tmLen))
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, apiVersion)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, kind)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(rawLen))
	start := len(b)
	b = b[:start+rawLen]
	if err := fill(b[start:]); err != nil {
		return nil, err
	}
	b = protowire.AppendTag(b, 3, protowire.BytesType) // contentEncoding: none
	b = protowire.AppendVarint(b, 0)
	b = protowire.AppendTag(b, 4, protowire.BytesType) // contentType: none (raw protobuf)
	b = protowire.AppendVarint(b, 0)
	return b, nil
}

// DecodeProto reads an object of kind k from the protobuf envelope.
func DecodeProto(k *Kind, data []byte) (Object, error) {
	u, err := openEnvelope(data)
	if err != nil {
		return nil, err
	}
	if u.kind != "" && u.kind != k.Kind {
		return nil, fmt.Errorf("kind: expected %q, got %q", k.Kind, u.kind)
	}
	if u.apiVersion != "" && u.apiVersion != k.APIVersion() {
		return nil, fmt.Errorf("apiVersion: expected %q for kind %s, got %q", k.APIVersion(), k.Kind, u.apiVersion)
	}
	return k.Decode(u.raw)
}

// unknown is a parsed runtime.Unknown; raw aliases the input.
type unknown struct {
	apiVersion, kind, contentEncoding, contentType string
	raw                                            []byte
}

func openEnvelope(data []byte) (*unknown, error) {
	if !bytes.HasPrefix(data, protoMagic) {
		return nil, fmt.Errorf("not a %s body (missing the k8s magic)", ProtobufContentType)
	}
	u := &unknown{}
	bad := func() (*unknown, error) { return nil, fmt.Errorf("invalid protobuf envelope") }
	b := data[len(protoMagic):]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 || typ != protowire.BytesType {
			return bad()
		}
		b = b[n:]
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return bad()
		}
		b = b[n:]
		switch num {
		case 1:
			for tm := v; len(tm) > 0; {
				tnum, ttyp, n := protowire.ConsumeTag(tm)
				if n < 0 || ttyp != protowire.BytesType {
					return bad()
				}
				tm = tm[n:]
				tv, n := protowire.ConsumeBytes(tm)
				if n < 0 {
					return bad()
				}
				tm = tm[n:]
				switch tnum {
				case 1:
					u.apiVersion = string(tv)
				case 2:
					u.kind = string(tv)
				}
			}
		case 2:
			u.raw = v
		case 3:
			u.contentEncoding = string(v)
		case 4:
			u.contentType = string(v)
		}
	}
	if u.contentEncoding != "" || (u.contentType != "" && u.contentType != ProtobufContentType) {
		return nil, fmt.Errorf("unsupported protobuf envelope content %q/%q", u.contentType, u.contentEncoding)
	}
	return u, nil
}

// EncodeProtoList builds the protobuf form of a list (kind k + "List"):
// field 1 is the ListMeta, field 2 each item, as in the generated list
// types; items are marshalled in place.
func EncodeProtoList(k *Kind, meta metav1.ListMeta, items []Object) ([]byte, error) {
	mb, err := meta.Marshal()
	if err != nil {
		return nil, err
	}
	sizes := make([]int, len(items))
	rawLen := protowire.SizeTag(1) + protowire.SizeBytes(len(mb))
	for i, it := range items {
		sizes[i] = it.(sizedMarshaler).Size()
		rawLen += protowire.SizeTag(2) + protowire.SizeBytes(sizes[i])
	}
	return envelope(k.APIVersion(), k.ListKind(), rawLen, func(buf []byte) error {
		b := buf[:0]
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, mb)
		for i, it := range items {
			b = protowire.AppendTag(b, 2, protowire.BytesType)
			b = protowire.AppendVarint(b, uint64(sizes[i]))
			start := len(b)
			b = b[:start+sizes[i]]
			if _, err := it.(sizedMarshaler).MarshalToSizedBuffer(b[start:]); err != nil {
				return err
			}
		}
		return nil
	})
}

// DecodeProtoList reads a list of kind k; it returns the list metadata and
// the items.
func DecodeProtoList(k *Kind, data []byte) (metav1.ListMeta, []Object, error) {
	var meta metav1.ListMeta
	u, err := openEnvelope(data)
	if err != nil {
		return meta, nil, err
	}
	if u.kind != k.ListKind() {
		return meta, nil, fmt.Errorf("kind: expected %q, got %q", k.ListKind(), u.kind)
	}
	var items []Object
	b := u.raw
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
