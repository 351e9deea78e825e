package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/snapfile"
)

func TestParseTargets(t *testing.T) {
	tests := []struct {
		args    string
		want    string // kind:names;...
		wantErr string
	}{
		{"pods", "Pod:", ""},
		{"po web db", "Pod:web,db", ""},
		{"deployments.apps/web", "Deployment:web", ""},
		{"cm/a cm/b secret/c", "ConfigMap:a,b;Secret:c", ""},
		{"cm,secrets x", "ConfigMap:x;Secret:x", ""},
		{"all", "Pod:;Service:;DaemonSet:;Deployment:;ReplicaSet:", ""},
		{"foo", "", `the server doesn't have a resource type "foo"`},
		{"cm/a b", "", "resource/name form"},
		{"cm a/b", "", "resource/name form"},
		{"cm/", "", "the name after / is empty"},
		{"", "", "you must specify the type of resource"},
	}
	for _, tt := range tests {
		got, err := parseTargets(strings.Fields(tt.args), true)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseTargets(%q) error %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseTargets(%q): %v", tt.args, err)
			continue
		}
		var parts []string
		for _, tg := range got {
			parts = append(parts, tg.kind.Kind+":"+strings.Join(tg.names, ","))
		}
		if s := strings.Join(parts, ";"); s != tt.want {
			t.Errorf("parseTargets(%q) = %s, want %s", tt.args, s, tt.want)
		}
	}
	if _, err := parseTargets([]string{"all"}, false); err == nil {
		t.Errorf(`"all" accepted where it makes no sense`)
	}
}

func TestNames(t *testing.T) {
	if got := objectRef(api.Deployment, "web"); got != "deployment.apps/web" {
		t.Errorf("objectRef = %s", got)
	}
	if got := kindRef(api.ConfigMap); got != "configmap" {
		t.Errorf("kindRef = %s", got)
	}
	if got := groupResource(api.DaemonSet); got != "daemonsets.apps" {
		t.Errorf("groupResource = %s", got)
	}
}

func TestLabelArgs(t *testing.T) {
	res, ch, err := parseLabelArgs([]string{"cm", "x", "app=web", "tier-", "example.com/team=a"})
	if err != nil || strings.Join(res, " ") != "cm x" || ch.set["app"] != "web" || ch.set["example.com/team"] != "a" || ch.remove[0] != "tier" {
		t.Fatalf("parseLabelArgs: %v %+v %v", res, ch, err)
	}
	for _, bad := range [][]string{{"cm", "x"}, {"cm", "x", "a=b=c"}, {"cm", "x", "-=v"}, {"cm", "x", "a=1", "a-"}, {"cm", "x", "a=" + strings.Repeat("v", 64)}} {
		if _, _, err := parseLabelArgs(bad); err == nil {
			t.Errorf("parseLabelArgs(%q) accepted", bad)
		}
	}
	cur := map[string]string{"app": "web", "tier": "front"}
	tests := []struct {
		set       map[string]string
		remove    []string
		overwrite bool
		want      string
		wantErr   string
	}{
		{map[string]string{"new": "1"}, nil, false, `{"metadata":{"labels":{"new":"1"},"resourceVersion":"5"}}`, ""},
		{map[string]string{"app": "web"}, nil, false, "", ""},
		{map[string]string{"app": "db"}, nil, false, "", "'app' already has a value (web), and --overwrite is false"},
		{map[string]string{"app": "db"}, nil, true, `{"metadata":{"labels":{"app":"db"},"resourceVersion":"5"}}`, ""},
		{nil, []string{"tier", "missing"}, false, `{"metadata":{"labels":{"tier":null},"resourceVersion":"5"}}`, ""},
	}
	for _, tt := range tests {
		p, err := labelPatch(cur, labelChanges{set: tt.set, remove: tt.remove}, tt.overwrite, "5")
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("labelPatch(%v) error %v, want %q", tt.set, err, tt.wantErr)
			}
			continue
		}
		if err != nil || string(p) != tt.want {
			t.Errorf("labelPatch(%v, %v) = %s, %v; want %s", tt.set, tt.remove, p, err, tt.want)
		}
	}
}

func TestErrorLine(t *testing.T) {
	nf := apierrors.NewNotFound(schema.GroupResource{Resource: "configmaps"}, "x")
	tests := []struct {
		err  error
		want string
	}{
		{nf, `Error from server (NotFound): configmaps "x" not found`},
		{&opError{`error when creating "a.yaml"`, nf}, `Error from server (NotFound): error when creating "a.yaml": configmaps "x" not found`},
		{fmt.Errorf("no orch server answered (http://a): %w", apierrors.NewServiceUnavailable("no leader")), "error: no orch server answered (http://a): no leader"},
		{errors.New("two\nlines"), "error: two lines"},
		{apierrors.NewGenericServerResponse(502, "GET", schema.GroupResource{}, "", "bad gateway", 0, false), "Error from server (InternalError): an error on the server (\"bad gateway\") has prevented the request from succeeding"},
	}
	for _, tt := range tests {
		if got := errorLine(tt.err); got != tt.want {
			t.Errorf("errorLine(%v) =\n%s\nwant\n%s", tt.err, got, tt.want)
		}
	}
}

func TestParseTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{"10s": 10 * time.Second, "2m": 2 * time.Minute, "5": 5 * time.Second, "0": 365 * 24 * time.Hour} {
		if got, err := parseTimeout(in); err != nil || got != want {
			t.Errorf("parseTimeout(%q) = %v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"-1s", "soon", "-3"} {
		if _, err := parseTimeout(bad); err == nil {
			t.Errorf("parseTimeout(%q) accepted", bad)
		}
	}
}

func TestPropagation(t *testing.T) {
	for in, want := range map[string]string{"background": "Background", "foreground": "Foreground", "orphan": "Orphan", "true": "Background", "false": "Orphan"} {
		if got, err := propagation(in); err != nil || got != want {
			t.Errorf("propagation(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := propagation("Background"); err == nil {
		t.Errorf("propagation accepted a capitalised value")
	}
}

// TestSnapshotSaveVerifies: a damaged or truncated download leaves no file.
func TestSnapshotSaveVerifies(t *testing.T) {
	var good bytes.Buffer
	state := strings.Repeat("state ", 1000)
	if err := snapfile.Write(&good, snapfile.Meta{Index: 12, Term: 2, CreatedAt: time.Unix(0, 0).UTC()}, strings.NewReader(state), int64(len(state))); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "s.snap")
	meta, n, err := saveVerified(file, bytes.NewReader(good.Bytes()))
	if err != nil || meta.Index != 12 || n != int64(good.Len()) {
		t.Fatalf("saveVerified(good) = %+v, %d, %v", meta, n, err)
	}
	if b, _ := os.ReadFile(file); !bytes.Equal(b, good.Bytes()) {
		t.Errorf("saved file differs from the download")
	}
	for name, data := range map[string][]byte{
		"truncated": good.Bytes()[:good.Len()/2],
		"garbage":   []byte("not a snapshot"),
		"flipped":   flip(good.Bytes(), good.Len()/2),
	} {
		bad := filepath.Join(dir, name+".snap")
		if _, _, err := saveVerified(bad, bytes.NewReader(data)); err == nil {
			t.Errorf("%s download accepted", name)
		}
		if _, err := os.Stat(bad); !os.IsNotExist(err) {
			t.Errorf("%s download left %s", name, bad)
		}
		if _, err := os.Stat(bad + ".tmp"); !os.IsNotExist(err) {
			t.Errorf("%s download left its temporary file", name)
		}
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0xff
	return c
}

func TestHelpAndUsageErrors(t *testing.T) {
	r := runCLI(t, "", "", "get", "pods", "-o", "wide", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "orchctl get - display one or many objects") || !strings.Contains(r.stdout, "--output, -o") {
		t.Errorf("get --help: %+v", r)
	}
	if r := runCLI(t, "", ""); r.code != 0 || !strings.Contains(r.stdout, "Commands:") {
		t.Errorf("no arguments: %+v", r)
	}
	if r := runCLI(t, "", "", "help", "operator", "raft"); r.code != 0 || !strings.Contains(r.stdout, "list-peers") {
		t.Errorf("help operator raft: %+v", r)
	}
	mustFail(t, "", "", "flag provided but not defined: -bogus", "get", "pods", "--bogus")
	mustFail(t, "", "", `unknown command "frobnicate" for "orchctl"`, "frobnicate")
	mustFail(t, "", "", "flag provided but not defined: -bogus", "--bogus")
	mustFail(t, "", "", `-o "xml": unsupported output format`, "get", "pods", "-o", "xml", "--server", "http://127.0.0.1:1")
	mustFail(t, "", "", "--replicas: required", "scale", "deploy/web", "--server", "http://127.0.0.1:1")
	mustFail(t, "", "", `--server: "http://a/b" is not a server URL`, "get", "pods", "--server", "http://a/b")
	mustFail(t, "", "", "--request-timeout", "get", "pods", "--server", "http://127.0.0.1:1", "--request-timeout", "soon")
	mustFail(t, "", "", "unsupported shell", "completion", "fish")
}

// TestCompletion sources the bash script in a real bash and completes
// command names through a built orchctl.
func TestCompletion(t *testing.T) {
	r := runCLI(t, "", "", "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "complete -o bashdefault -o default -F _orchctl_complete orchctl") {
		t.Fatalf("completion bash: %+v", r)
	}
	if r := runCLI(t, "", "", "completion", "zsh"); r.code != 0 || !strings.Contains(r.stdout, "compdef _orchctl orchctl") {
		t.Errorf("completion zsh: %+v", r)
	}
	bashScript := r.stdout
	r = runCLI(t, "", "", "--generate-bash-completion")
	if !strings.Contains(r.stdout, "apply\n") || !strings.Contains(r.stdout, "operator\n") {
		t.Errorf("command completion: %q", r.stdout)
	}
	if r := runCLI(t, "", "", "get", "--generate-bash-completion"); !strings.Contains(r.stdout, "deployments\n") {
		t.Errorf("resource completion: %q", r.stdout)
	}
	if r := runCLI(t, "", "", "get", "--ou", "--generate-bash-completion"); r.stdout != "--output\n" {
		t.Errorf("flag completion: %q", r.stdout)
	}
	bash, err := exec.LookPath("bash")
	if err != nil || testing.Short() {
		t.Skip("bash not found, or -short")
	}
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "orchctl"), "orch.dev/orch/cmd/orchctl")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	script := writeFile(t, dir, "completion.bash", bashScript)
	cmd := exec.Command(bash, "--norc", "--noprofile", "-c", `set -e; source "$1"
COMP_WORDS=(orchctl ge); COMP_CWORD=1; _orchctl_complete; echo "1:${COMPREPLY[*]}"
COMP_WORDS=(orchctl operator raft ""); COMP_CWORD=3; _orchctl_complete; echo "2:${COMPREPLY[*]}"
COMP_WORDS=(orchctl get deploy); COMP_CWORD=2; _orchctl_complete; echo "3:${COMPREPLY[*]}"`, "bash", script)
	cmd.Env = append(os.Environ(), "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	want := "1:get\n2:list-peers transfer-leader remove-peer\n3:deployments\n"
	if string(out) != want {
		t.Errorf("bash completion:\n%s\nwant:\n%s", out, want)
	}
}
