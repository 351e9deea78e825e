package fsm

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestMessageTypeNumbers pins the numbers written into every log entry:
// renumbering would make existing logs mean something else.
func TestMessageTypeNumbers(t *testing.T) {
	for _, c := range []struct {
		got, want MessageType
	}{{CreateType, 1}, {UpdateType, 2}, {DeleteType, 3}, {BatchType, 4}, {BindType, 5}, {EvictType, 6}, {IgnoreUnknownFlag, 0x80}} {
		if c.got != c.want {
			t.Errorf("message type %d, want %d", c.got, c.want)
		}
	}
	for _, c := range []Command{&Create{}, &Update{}, &Delete{}, &Batch{}, &Bind{}, &Evict{}} {
		if b := Encode(c); b[1] != 1 {
			t.Errorf("%T encodes version %d, want 1", c, b[1])
		}
	}
}

// goldenCommands are fixed commands whose encodings are kept in
// testdata/commands: the contract that log entries written by this version
// stay readable.
func goldenCommands(t testing.TB) map[string]Command {
	d := deployment("prod", "web", 3)
	d.Labels = map[string]string{"tier": "frontend", "app": "web"}
	d.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("64Mi")}
	p := pod("prod", "web-1", "nginx:1.27")
	p.ResourceVersion = "41"
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.7", HostIP: "192.168.1.10"}
	cm := configMap("prod", "settings", map[string]string{"b": "2", "a": "1", "c": "3"})
	return map[string]Command{
		"create": createCmd(t, d),
		"update": statusCmd(t, p),
		"delete": &Delete{Kind: "Pod", Namespace: "prod", Name: "web-1", UID: "uid-prod-web-1",
			ResourceVersion: 42, DeletionTime: time.Date(2024, 5, 1, 12, 30, 0, 5, time.UTC).UnixNano(), Orphan: true},
		"batch": &Batch{Commands: []Command{
			createCmd(t, cm),
			updateCmd(t, configMap("prod", "settings", map[string]string{"a": "10"})),
			&Delete{Kind: "ConfigMap", Namespace: "prod", Name: "old"},
		}},
		"bind": &Bind{Time: time.Date(2024, 5, 1, 12, 31, 0, 0, time.UTC).UnixNano(), RequestID: "req-bind", Bindings: []Binding{
			{Namespace: "prod", Name: "web-1", UID: "uid-prod-web-1", Node: "n1"},
			{Namespace: "prod", Name: "web-2", Node: "n2"},
		}},
		"evict": &Evict{Namespace: "prod", Name: "web-1", UID: "uid-prod-web-1",
			DeletionTime: time.Date(2024, 5, 1, 12, 32, 0, 0, time.UTC).UnixNano(), Grace: ptr(int64(10)), RequestID: "req-evict"},
		"delete-grace": &Delete{Kind: "Pod", Namespace: "prod", Name: "web-2", Grace: ptr(int64(0))},
		// Request IDs (exactly-once writes) on every command type.
		"requests": &Batch{RequestID: "req-batch", Commands: []Command{
			&Create{Kind: "ConfigMap", Object: marshal(t, cm), RequestID: "req-create"},
			&Update{Kind: "ConfigMap", Object: marshal(t, cm), Status: false, RequestID: "req-update"},
			&Delete{Kind: "ConfigMap", Namespace: "prod", Name: "settings", RequestID: "req-delete"},
		}},
	}
}

func TestGoldenCommands(t *testing.T) {
	for name, cmd := range goldenCommands(t) {
		t.Run(name, func(t *testing.T) {
			golden(t, filepath.Join("commands", name+".bin"), Encode(cmd))
		})
	}
}

// TestGoldenCommandsDecode decodes every stored command file, including
// those of retired fixtures, so that old logs stay readable.
func TestGoldenCommandsDecode(t *testing.T) {
	want := goldenCommands(t)
	files, err := filepath.Glob(filepath.Join("testdata", "commands", "*.bin"))
	if err != nil || len(files) < len(want) {
		t.Fatalf("golden command files: %v %v (run go test ./fsm -update)", files, err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(data)
		if err != nil {
			t.Fatalf("%s no longer decodes: %v", file, err)
		}
		name := filepath.Base(file[:len(file)-len(".bin")])
		if w, ok := want[name]; ok && !reflect.DeepEqual(got, w) {
			t.Errorf("%s decodes to %#v, want %#v", file, got, w)
		}
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	cmds := map[string]Command{
		"create":           createCmd(t, configMap("ns", "a", map[string]string{"k": "v"})),
		"create empty obj": &Create{Kind: "ConfigMap", Object: []byte{}},
		"update":           updateCmd(t, pod("ns", "p", "busybox")),
		"update status":    statusCmd(t, pod("ns", "p", "busybox")),
		"delete minimal":   &Delete{Kind: "Node", Name: "n1"},
		"delete full": &Delete{Kind: "Deployment", Namespace: "ns", Name: "d", UID: "u",
			ResourceVersion: 1<<63 + 5, DeletionTime: 1714564800123456789, Orphan: true},
		"delete negative time": &Delete{Kind: "Pod", Namespace: "ns", Name: "p", DeletionTime: -1},
		"empty batch":          &Batch{},
		"request IDs": &Batch{RequestID: "b", Commands: []Command{
			&Create{Kind: "Namespace", Object: []byte{}, RequestID: "c"},
			&Update{Kind: "Namespace", Object: []byte{}, Status: true, RequestID: "u"},
			&Delete{Kind: "Namespace", Name: "n", RequestID: "d"}}},
		"batch": &Batch{Commands: []Command{
			createCmd(t, namespace("ns")),
			statusCmd(t, pod("ns", "p", "busybox")),
			&Delete{Kind: "Pod", Namespace: "ns", Name: "p", Orphan: true},
		}},
	}
	for name, cmd := range cmds {
		t.Run(name, func(t *testing.T) {
			b := Encode(cmd)
			if MessageType(b[0]) != cmd.Type() {
				t.Fatalf("type byte %d, want %d", b[0], cmd.Type())
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, cmd) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", got, cmd)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	create := Encode(createCmd(t, configMap("ns", "a", nil)))
	future := append([]byte{99, 1}, create[2:]...)
	batchOf := func(subs ...[]byte) []byte {
		b := []byte{byte(BatchType), 1}
		for _, s := range subs {
			b = protowire.AppendTag(b, fCommand, protowire.BytesType)
			b = protowire.AppendBytes(b, s)
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
		want error // nil: the command is ignored (nil command, nil error)
	}{
		{"nil", nil, ErrBadCommand},
		{"one byte", []byte{byte(CreateType)}, ErrBadCommand},
		{"version 0", []byte{byte(CreateType), 0}, ErrBadCommand},
		{"truncated length", []byte{byte(CreateType), 1, 0x0a, 0x05, 'a'}, ErrBadCommand},
		{"field number 0", []byte{byte(DeleteType), 1, 0x00, 0x01}, ErrBadCommand},
		{"truncated varint", []byte{byte(UpdateType), 1, 0x18, 0x80}, ErrBadCommand},
		{"truncated tag", []byte{byte(UpdateType), 1, 0x80}, ErrBadCommand},
		{"stray end group", []byte{byte(CreateType), 1, 0x0c}, ErrBadCommand},
		{"truncated create", create[:len(create)-1], ErrBadCommand},
		{"nested batch", batchOf(batchOf(create)), ErrBadCommand},
		{"batch with malformed command", batchOf(create, []byte{byte(CreateType)}), ErrBadCommand},
		{"unknown type", future, ErrFromTheFuture},
		{"type 0", []byte{0, 1}, ErrFromTheFuture},
		{"unknown type 0x7f", []byte{0x7f, 1}, ErrFromTheFuture},
		{"newer version", append([]byte{byte(CreateType), 2}, create[2:]...), ErrFromTheFuture},
		{"newer version of batch", []byte{byte(BatchType), 200}, ErrFromTheFuture},
		{"unknown ignorable type", append([]byte{99 | byte(IgnoreUnknownFlag), 1}, create[2:]...), nil},
		{"unknown ignorable type, garbage payload", []byte{0xff, 7, 0xff, 0xff}, nil},
		{"newer version of a known ignorable type", append([]byte{byte(CreateType | IgnoreUnknownFlag), 2}, create[2:]...), nil},
		// A batch holding a command this server cannot apply must halt,
		// like the command on its own: skipping it would diverge.
		{"batch with unknown command", batchOf(create, future), ErrFromTheFuture},
		{"batch with newer command version", batchOf(append([]byte{byte(DeleteType), 9}, 0x0a, 0x01, 'x')), ErrFromTheFuture},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := Decode(tt.data)
			if tt.want == nil {
				if cmd != nil || err != nil {
					t.Fatalf("Decode = %#v, %v; want nil, nil", cmd, err)
				}
				return
			}
			if cmd != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %#v, %v; want error %v", cmd, err, tt.want)
			}
			other := ErrFromTheFuture
			if tt.want == ErrFromTheFuture {
				other = ErrBadCommand
			}
			if errors.Is(err, other) {
				t.Fatalf("Decode error %v is both %v and %v", err, tt.want, other)
			}
		})
	}
}

// TestDecodeForwardCompatible: newer writers may add payload fields and
// ignorable sub-commands; older readers skip them.
func TestDecodeForwardCompatible(t *testing.T) {
	want := createCmd(t, configMap("ns", "a", map[string]string{"k": "v"}))
	b := Encode(want)
	b = protowire.AppendTag(b, 99, protowire.VarintType)
	b = protowire.AppendVarint(b, 7)
	b = protowire.AppendTag(b, 100, protowire.Fixed32Type)
	b = protowire.AppendFixed32(b, 7)
	b = protowire.AppendTag(b, 101, protowire.BytesType)
	b = protowire.AppendBytes(b, []byte("later"))
	b = protowire.AppendTag(b, 102, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, 7)
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode with unknown fields = %#v, %v; want %#v", got, err, want)
	}

	// The ignorable flag on a known type does not change its meaning.
	flagged := append([]byte{byte(CreateType | IgnoreUnknownFlag)}, Encode(want)[1:]...)
	if got, err := Decode(flagged); err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode of flagged known type = %#v, %v; want %#v", got, err, want)
	}

	batch := Encode(&Batch{Commands: []Command{want}})
	batch = protowire.AppendTag(batch, fCommand, protowire.BytesType)
	batch = protowire.AppendBytes(batch, []byte{99 | byte(IgnoreUnknownFlag), 1, 0x0a, 0x00})
	got, err = Decode(batch)
	if err != nil || !reflect.DeepEqual(got, &Batch{Commands: []Command{want}}) {
		t.Fatalf("Decode of batch with ignorable command = %#v, %v", got, err)
	}
}

// TestApplyIgnorable: an ignorable command from a newer version only
// advances the index.
func TestApplyIgnorable(t *testing.T) {
	f := newTestFSM(t)
	f.mustApply(createCmd(t, namespace("ns")))
	before := dump(f.View())
	res := f.applyBytes([]byte{99 | byte(IgnoreUnknownFlag), 1, 0x0a, 0x01, 'x'})
	if res.Err != nil || res.Record != nil || res.Batch != nil {
		t.Fatalf("ignorable command result %+v, want empty", res)
	}
	if f.AppliedIndex() != 2 || f.View().Index() != 2 {
		t.Fatalf("applied index %d / view %d, want 2", f.AppliedIndex(), f.View().Index())
	}
	if after := dump(f.View()); after[len("index 2"):] != before[len("index 1"):] {
		t.Fatalf("ignorable command changed state:\n%s\n%s", before, after)
	}
	if h := f.halts.calls(); len(h) != 0 {
		t.Fatalf("Halt called: %v", h)
	}
}

// TestApplyFromTheFuture: a command this server cannot apply halts it.
func TestApplyFromTheFuture(t *testing.T) {
	f := newTestFSM(t)
	res := f.applyBytes([]byte{42, 1})
	wantErr(t, res, ErrFromTheFuture)
	if h := f.halts.calls(); len(h) != 1 || !errors.Is(h[0], ErrFromTheFuture) {
		t.Fatalf("Halt calls %v, want one ErrFromTheFuture", h)
	}
	res = f.applyBytes([]byte{byte(CreateType), 1, 0x0a})
	wantErr(t, res, ErrBadCommand)
	if h := f.halts.calls(); len(h) != 1 {
		t.Fatalf("Halt called for a malformed command: %v", h)
	}

	// Without a Halt hook the FSM refuses to go on.
	defer func() {
		if recover() == nil {
			t.Fatal("default Halt did not panic")
		}
	}()
	New(Config{}).Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{42, 1}})
}

// A batch built from encoded commands is the batch Encode builds.
func TestEncodeBatchMatchesEncode(t *testing.T) {
	cmds := goldenCommands(t)["batch"].(*Batch).Commands
	var encoded [][]byte
	for _, c := range cmds {
		encoded = append(encoded, Encode(c))
	}
	if got, want := EncodeBatch(encoded), Encode(&Batch{Commands: cmds}); !bytes.Equal(got, want) {
		t.Fatalf("EncodeBatch differs from Encode(&Batch{})")
	}
}
