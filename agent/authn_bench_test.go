package agent

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
	"orch.dev/orch/internal/join"
)

// benchAgent is an agent with only an FSM holding one user token record
// (sealed, as the API stores it), and that token.
func benchAgent(b *testing.B) (*Agent, string) {
	b.Helper()
	a := &Agent{cfg: Config{Token: "cluster-secret"}, logger: slog.New(slog.DiscardHandler)}
	a.fsm = fsm.New(fsm.Config{Logger: a.logger})
	tok := newUserToken()
	now := time.Now()
	rec := tokenRecord{Record: join.Record{ID: tok.id, SecretHash: hashUserSecret(tok.id, tok.secret), Role: "edit",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, User: "bob"}
	s := a.secrets().encryptSecret(rec.toSecret(), nil)
	stampNew(s, now)
	obj, _ := s.Marshal()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace}}
	api.Namespace.SetTypeMeta(ns)
	stampNew(ns, now)
	nsObj, _ := ns.Marshal()
	for i, cmd := range []fsm.Command{
		&fsm.Create{Kind: "Namespace", Object: nsObj},
		&fsm.Create{Kind: "Secret", Object: obj},
	} {
		if res, ok := a.fsm.Apply(&raft.Log{Index: uint64(i + 1), Data: fsm.Encode(cmd)}).(*fsm.Result); !ok || res.Err != nil {
			b.Fatalf("apply %T: %v", cmd, res)
		}
	}
	return a, tok.String()
}

// What authenticating and authorising costs per request, without HTTP:
// go test -run XXX -bench 'Authn' -benchmem ./agent
func BenchmarkAuthnUserToken(b *testing.B) {
	a, token := benchAgent(b)
	r, _ := http.NewRequest("GET", "/api/v1/namespaces/default/pods", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	if p, err := a.authenticate(r); err != nil || p.Name != "bob" {
		b.Fatalf("%v %v", p, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		p, err := a.authenticate(r)
		if err != nil {
			b.Fatal(err)
		}
		if authorize(p, attributesOf(r), a.fsm.View()) != "" {
			b.Fatal("refused")
		}
	}
}

func BenchmarkAuthnClusterSecret(b *testing.B) {
	a, _ := benchAgent(b)
	r, _ := http.NewRequest("GET", "/api/v1/namespaces/default/pods", nil)
	r.Header.Set("Authorization", "Bearer cluster-secret")
	b.ReportAllocs()
	for b.Loop() {
		p, err := a.authenticate(r)
		if err != nil {
			b.Fatal(err)
		}
		if authorize(p, attributesOf(r), a.fsm.View()) != "" {
			b.Fatal("refused")
		}
	}
}
