package cli

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"
)

func TestReorder(t *testing.T) {
	app := newApp(&env{ctx: context.Background(), stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard})
	tests := []struct {
		name string
		in   string
		want string
		help bool
	}{
		{"flags already first", "get -o wide pods", "get -o wide pods", false},
		{"value flag after positional", "get pods -o wide", "get -o wide pods", false},
		{"global flag after positional", "get pods -n kube-system", "-n kube-system get pods", false},
		{"global flag before command", "-n kube-system get pods", "-n kube-system get pods", false},
		{"long flag with equals", "get pods --output=json", "get --output=json pods", false},
		{"bool flag does not take the next argument", "get pods -w web", "get -w pods web", false},
		{"bool flags and values mixed", "get pods web -A --show-labels -l app=web", "get -A --show-labels -l app=web pods web", false},
		{"scale", "scale deployment/web --replicas 3", "scale --replicas 3 deployment/web", false},
		{"repeatable flag keeps its order", "apply -f a.yaml -f b.yaml", "apply -f a.yaml -f b.yaml", false},
		{"dash is stdin, not a flag", "apply -f -", "apply -f -", false},
		{"double dash ends flags", "label cm x -- -weird", "label -- cm x -weird", false},
		{"flags before double dash are moved", "get cm x -o name -- -y", "get -o name -- cm x -y", false},
		{"nested subcommands", "operator raft list-peers -o json", "operator raft list-peers -o json", false},
		{"flag before nested subcommand", "operator raft -o json list-peers", "operator raft list-peers -o json", false},
		{"subcommand flag before its command", "-o json members", "members -o json", false},
		{"unknown flag stays with the leaf", "get pods --bogus", "get --bogus pods", false},
		{"value that looks like a subcommand", "get -o name members", "get -o name members", false},
		{"server flag anywhere", "delete cm x --server http://a:1,http://b:2 --cascade=orphan", "--server http://a:1,http://b:2 delete --cascade=orphan cm x", false},
		{"help after arguments", "get pods -h", "get -h pods", true},
		{"long help", "operator raft transfer-leader --help", "operator raft transfer-leader --help", true},
		{"value flag at the end without value", "get pods -o", "get -o pods", false},
		{"flag value starting with a dash", "get pods --field-selector -x", "get --field-selector -x pods", false},
		{"label with removal", "label cm x app- --overwrite", "label --overwrite cm x app-", false},
		{"no arguments", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"orchctl"}, strings.Fields(tt.in)...)
			inv := reorder(app, args)
			want := append([]string{"orchctl"}, strings.Fields(tt.want)...)
			if !slices.Equal(inv.args, want) {
				t.Errorf("reorder(%q)\n got %q\nwant %q", tt.in, inv.args, want)
			}
			if inv.help != tt.help {
				t.Errorf("help = %v, want %v", inv.help, tt.help)
			}
		})
	}
}

func TestFlagName(t *testing.T) {
	tests := []struct {
		tok      string
		name     string
		hasValue bool
		ok       bool
	}{
		{"-o", "o", false, true},
		{"--output", "output", false, true},
		{"--output=json", "output", true, true},
		{"-n=x", "n", true, true},
		{"-", "", false, false},
		{"--", "", false, false},
		{"---x", "", false, false},
		{"pods", "", false, false},
		{"-=x", "", false, false},
	}
	for _, tt := range tests {
		name, hasValue, ok := flagName(tt.tok)
		if name != tt.name || hasValue != tt.hasValue || ok != tt.ok {
			t.Errorf("flagName(%q) = %q, %v, %v; want %q, %v, %v", tt.tok, name, hasValue, ok, tt.name, tt.hasValue, tt.ok)
		}
	}
}
