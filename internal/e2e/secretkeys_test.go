package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/testcluster"
)

// The cluster secret changes from A to B: Secrets written under A (a
// user's, and the token records) are readable once the servers run with
// B and --previous-cluster-secret A, and after `orchctl operator secrets
// reseal` with B alone. The CA, sealed with A, is re-sealed with B at the
// first restart, so the servers start with B alone too.
func TestClusterSecretChange(t *testing.T) {
	secretA, secretB := testcluster.NewSecret(), testcluster.NewSecret()
	c := testcluster.Start(t, testcluster.Options{Fast: true, Token: secretA})
	ctx := context.Background()
	orchctl := func(args ...string) string {
		t.Helper()
		out, err := c.Orchctl(args...)
		if err != nil {
			t.Fatalf("orchctl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(out)
	}
	db := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "db"}, Data: map[string][]byte{"password": []byte("hunter2")}}
	api.Secret.SetTypeMeta(db)
	if _, err := c.Client().Create(ctx, db); err != nil {
		t.Fatal(err)
	}
	viewer := orchctl("operator", "token", "create", "--role", "view", "--user", "alice")

	readable := func(when string) {
		t.Helper()
		obj, err := c.Client().Get(ctx, api.Secret, "default", "db", false)
		if err != nil {
			t.Fatalf("%s: get the Secret: %v", when, err)
		}
		if got := string(obj.(*corev1.Secret).Data["password"]); got != "hunter2" {
			t.Fatalf("%s: the Secret reads %q", when, got)
		}
		if out := orchctl("operator", "token", "list"); !strings.Contains(out, "alice") {
			t.Fatalf("%s: token list lacks alice's token:\n%s", when, out)
		}
		out, err := c.Orchctl("--token", viewer, "get", "configmaps", "-A")
		if err != nil {
			t.Fatalf("%s: alice's token: %v\n%s", when, err, out)
		}
	}
	restart := func(token string, previous ...string) {
		t.Helper()
		for _, s := range c.Servers {
			s.Stop()
		}
		for _, s := range c.Servers {
			s.SetArg("--token", token)
			s.DropArg("--previous-cluster-secret")
			for _, p := range previous {
				s.AddArg("--previous-cluster-secret", p)
			}
			if err := s.Start(); err != nil {
				t.Fatal(err)
			}
		}
		c.SetToken(token)
		c.WaitVoters(3, 60*time.Second)
	}

	// A wrong previous secret is refused by name.
	out, err := c.Orchd("agent", "--server", "--name", "x", "--data-dir", t.TempDir(), "--token", secretB, "--previous-cluster-secret", secretB)
	if err == nil || !strings.Contains(out, "--previous-cluster-secret") {
		t.Fatalf("a previous secret equal to --token: %v\n%s", err, out)
	}

	restart(secretB, secretA)
	readable("with B and previous A")
	if _, err := c.Orchctl("--token", secretA, "get", "secrets"); err == nil {
		t.Fatal("the previous cluster secret still authenticates")
	}
	if out := orchctl("operator", "secrets", "reseal"); !strings.Contains(out, "re-sealed") {
		t.Fatalf("reseal: %s", out)
	}

	restart(secretB)
	readable("with B alone after the reseal")
	for _, s := range c.Servers {
		if s.LogContains("cannot be decrypted") {
			t.Fatalf("%s could not decrypt something", s.Name)
		}
		if _, err := os.Stat(filepath.Join(s.DataDir, "gossip-keyring.json")); err != nil {
			t.Fatalf("%s: the reseal did not store the gossip keyring: %v", s.Name, err)
		}
	}
}
