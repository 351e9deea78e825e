package runtime

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestProcessArgs(t *testing.T) {
	ep, cmd := []string{"/bin/web"}, []string{"--port", "80"}
	for _, c := range []struct {
		command, args, want []string
	}{
		{nil, nil, []string{"/bin/web", "--port", "80"}},
		{nil, []string{"-v"}, []string{"/bin/web", "-v"}},
		{[]string{"/bin/sh"}, nil, []string{"/bin/sh"}},
		{[]string{"/bin/sh", "-c"}, []string{"echo hi"}, []string{"/bin/sh", "-c", "echo hi"}},
	} {
		if got := processArgs(ep, cmd, c.command, c.args); !slices.Equal(got, c.want) {
			t.Errorf("command %q args %q: %q, want %q", c.command, c.args, got, c.want)
		}
	}
}

// ReadLog's tail and limit, on logs with and without a final newline and
// on one longer than its read chunk.
func TestReadLog(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("0123456789abcdef\n", 2000) // 34 000 bytes
	for _, c := range []struct {
		log  string
		opts LogOptions
		want string
	}{
		{"", LogOptions{TailLines: 3}, ""},
		{"a", LogOptions{TailLines: 1}, "a"},
		{"a\n", LogOptions{TailLines: 1}, "a\n"},
		{"a\nb", LogOptions{TailLines: 1}, "b"},
		{"a\nb\n", LogOptions{TailLines: 1}, "b\n"},
		{"a\nb\n", LogOptions{TailLines: 2}, "a\nb\n"},
		{"a\nb\n", LogOptions{TailLines: 5}, "a\nb\n"},
		{"\n\n\n", LogOptions{TailLines: 2}, "\n\n"},
		{"abcdef", LogOptions{LimitBytes: 4}, "abcd"},
		{"a\nb\nc\n", LogOptions{TailLines: 2, LimitBytes: 3}, "b\nc"},
		{long, LogOptions{TailLines: 1000}, long[len(long)-17000:]},
		{long, LogOptions{LimitBytes: 10000}, long[:10000]},
		{"done\n", LogOptions{Follow: true}, "done\n"},
	} {
		p := filepath.Join(dir, "log")
		if err := os.WriteFile(p, []byte(c.log), 0o644); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		close(exited)
		var b strings.Builder
		if err := ReadLog(context.Background(), p, c.opts, &b, exited); err != nil {
			t.Fatal(err)
		}
		if b.String() != c.want {
			t.Errorf("log %.20q %+v: got %.40q (%d bytes), want %.40q (%d bytes)", c.log, c.opts, b.String(), b.Len(), c.want, len(c.want))
		}
	}
	var b strings.Builder
	if err := ReadLog(context.Background(), filepath.Join(dir, "none"), LogOptions{}, &b, nil); err != nil || b.Len() != 0 {
		t.Fatalf("missing log: %q %v", b.String(), err)
	}
}

func TestNormalizeImageRef(t *testing.T) {
	for in, want := range map[string]string{
		"web":                         "docker.io/library/web:latest",
		"web:v1":                      "docker.io/library/web:v1",
		"orch.test/web:v1":            "orch.test/web:v1",
		"127.0.0.1:5000/team/web":     "127.0.0.1:5000/team/web:latest",
		"localhost/web@sha256:" + h64: "localhost/web@sha256:" + h64,
	} {
		if got, err := NormalizeImageRef(in); err != nil || got != want {
			t.Errorf("%s: %q %v, want %q", in, got, err, want)
		}
	}
	if _, err := NormalizeImageRef("Bad Name"); err == nil {
		t.Error("accepted a bad name")
	}
}

var h64 = strings.Repeat("ab", 32)

// The stderr spelling of a log path names the same file differently, so
// containerd's shim gives each stream its own descriptor.
func TestLogFileIO(t *testing.T) {
	io, err := logFileIO("/var/log/orch/pods/ns_p_u/c/0.log")("id")
	if err != nil {
		t.Fatal(err)
	}
	cfg := io.Config()
	if cfg.Stdout != "/var/log/orch/pods/ns_p_u/c/0.log" || cfg.Stderr == cfg.Stdout || filepath.Clean(cfg.Stderr) != cfg.Stdout || cfg.Stdin != "" {
		t.Fatalf("config %+v", cfg)
	}
}
