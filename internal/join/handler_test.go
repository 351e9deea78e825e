package join

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"orch.dev/orch/internal/pki"
	"orch.dev/orch/internal/pki/pkitest"
)

// fixture is a handler with one multi-use worker token, driven without a
// network so the fuzzer can run it fast.
type fixture struct {
	ca      *pki.CA
	h       http.Handler
	token   string
	csr     string
	csrName string
}

func newFixture(t testing.TB) *fixture {
	ca := pkitest.NewCA(t, "c")
	st := NewMemStore()
	tok, rec, err := Generate(pki.RoleWorker, time.Hour, false, ca.Cert, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Put(rec)
	key, _ := pki.NewKey()
	csr, err := pki.NewCSR(key, pki.NodeRequest{Name: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	h := Handler(HandlerConfig{CA: func() (*pki.CA, error) { return ca, nil }, Store: st, Logger: quiet})
	return &fixture{ca: ca, h: h, token: tok, csr: string(csr), csrName: "w1"}
}

// expand fills placeholders, so seed bodies stay valid across runs (each
// run has its own CA and token) and the fuzzer mutates around real ones.
func (f *fixture) expand(body []byte) []byte {
	tok := mustParseTB(f.token)
	r := strings.NewReplacer("$TOKEN", f.token, "$ID", tok.ID, "$CAHASH", tok.CAHash, "$CSR", jsonString(f.csr))
	return []byte(r.Replace(string(body)))
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b[1 : len(b)-1])
}

func mustParseTB(s string) Token {
	t, _ := Parse(s)
	return t
}

func (f *fixture) post(body []byte) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body)))
	return w
}

func TestHandlerRequests(t *testing.T) {
	f := newFixture(t)
	otherCluster := "orch1.$ID." + mustParseTB(f.token).Secret + "." + goodCA
	cases := []struct {
		name string
		body string
		code int
		msg  string
	}{
		{"good", `{"token":"$TOKEN","role":"worker","csr":"$CSR"}`, 200, ""},
		{"not JSON", `token=x`, 400, "not valid JSON"},
		{"wrong JSON type", `{"token":1}`, 400, "not valid JSON"},
		{"bad token", `{"token":"orch1.x","role":"worker","csr":"$CSR"}`, 400, "malformed join token"},
		{"no role", `{"token":"$TOKEN","csr":"$CSR"}`, 400, `role ""`},
		{"user role", `{"token":"$TOKEN","role":"user","csr":"$CSR"}`, 400, `role "user"`},
		{"no CSR", `{"token":"$TOKEN","role":"worker"}`, 400, "csr"},
		{"CSR not PEM", `{"token":"$TOKEN","role":"worker","csr":"MIIB"}`, 400, "csr"},
		{"token of another cluster", `{"token":"` + otherCluster + `","role":"worker","csr":"$CSR"}`, 403, "another cluster"},
		{"too large", `{"token":"$TOKEN","role":"worker","csr":"` + strings.Repeat("A", maxRequestSize) + `"}`, 413, "larger than"},
	}
	for _, c := range cases {
		w := f.post(f.expand([]byte(c.body)))
		var st status
		json.Unmarshal(w.Body.Bytes(), &st)
		if w.Code != c.code || !strings.Contains(st.Message, c.msg) {
			t.Errorf("%s: %d %q, want %d %q", c.name, w.Code, st.Message, c.code, c.msg)
		}
		if c.code != 200 && (st.Kind != "Status" || st.Code != c.code || st.Reason == "") {
			t.Errorf("%s: error body %+v is not a Status", c.name, st)
		}
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, Path, nil))
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", w.Code)
	}
}

// The client checks what a server returns even over the pinned session:
// a server that holds the CA but misbehaves cannot hand a node a
// certificate for another key, name or role.
func TestCheckResponse(t *testing.T) {
	ca := pkitest.NewCA(t, "c")
	other := pkitest.NewCA(t, "other")
	key, _ := pki.NewKey()
	otherKey, _ := pki.NewKey()
	caHash := pki.Fingerprint(ca.Cert)
	issue := func(ca *pki.CA, pub any, role pki.Role, name string) string {
		c, err := ca.IssueNode(pub, role, pki.NodeRequest{Name: name}, pki.IssueOptions{Now: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return string(pki.CertPEM(c))
	}
	caPEM := string(pki.CertPEM(ca.Cert))
	if _, err := checkResponse(Response{Certificate: issue(ca, key.Public(), pki.RoleWorker, "w1"), CA: caPEM}, caHash, pki.RoleWorker, key, "w1"); err != nil {
		t.Fatalf("good response: %v", err)
	}
	bad := map[string]Response{
		"another key":     {Certificate: issue(ca, otherKey.Public(), pki.RoleWorker, "w1"), CA: caPEM},
		"another name":    {Certificate: issue(ca, key.Public(), pki.RoleWorker, "w2"), CA: caPEM},
		"another role":    {Certificate: issue(ca, key.Public(), pki.RoleServer, "w1"), CA: caPEM},
		"another CA":      {Certificate: issue(other, key.Public(), pki.RoleWorker, "w1"), CA: string(pki.CertPEM(other.Cert))},
		"cert of another": {Certificate: issue(other, key.Public(), pki.RoleWorker, "w1"), CA: caPEM},
		"no certificate":  {CA: caPEM},
		"no CA":           {Certificate: issue(ca, key.Public(), pki.RoleWorker, "w1")},
	}
	for name, r := range bad {
		if _, err := checkResponse(r, caHash, pki.RoleWorker, key, "w1"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzJoinRequest(f *testing.F) {
	fx := newFixture(f)
	for _, s := range []string{
		`{"token":"$TOKEN","role":"worker","csr":"$CSR"}`,
		`{"token":"$TOKEN","role":"server","csr":"$CSR"}`,
		`{"token":"orch1.$ID.00112233445566778899aabbccddeeff.$CAHASH","role":"worker","csr":"$CSR"}`,
		`{"token":"$TOKEN","role":"worker","csr":"-----BEGIN CERTIFICATE REQUEST-----\nMIIBADCBpwIBADAN\n-----END CERTIFICATE REQUEST-----\n"}`,
		`{"token":"$TOKEN","role":"worker","csr":"$CSR$CSR"}`,
		`{"token":"$TOKEN","role":"worker","csr":"$CSR","token":"x"}`,
		`{}`,
		`null`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := fx.post(fx.expand(body))
		if w.Code != http.StatusOK {
			var st status
			if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Kind != "Status" || st.Code != w.Code {
				t.Fatalf("refusal %d without a Status body: %q", w.Code, w.Body.String())
			}
			if w.Code != 400 && w.Code != 403 && w.Code != 413 {
				t.Fatalf("unexpected code %d: %s", w.Code, st.Message)
			}
			return
		}
		// Whatever was sent, the only certificate the fixture's worker
		// token can yield is a worker's, chained to the CA.
		var resp Response
		if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
			t.Fatal(err)
		}
		cert, err := pki.ParseCertPEM([]byte(resp.Certificate))
		if err != nil {
			t.Fatal(err)
		}
		id, err := pki.VerifyPeer([]*x509.Certificate{cert}, pki.Pool(fx.ca.Cert), nil, pki.Policy{Roles: []pki.Role{pki.RoleWorker}})
		if err != nil || resp.Role != pki.RoleWorker {
			t.Fatalf("issued %+v: %v", id, err)
		}
	})
}
