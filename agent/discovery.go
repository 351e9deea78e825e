package agent

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"orch.dev/orch/api"
)

// KubernetesMinor is the Kubernetes API release whose types orch serves.
const KubernetesMinor = "37"

func (a *Agent) serveVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, version.Info{
		Major: "1", Minor: KubernetesMinor,
		GitVersion: fmt.Sprintf("v1.%s.0-orch+%s", KubernetesMinor, strings.ReplaceAll(a.cfg.Version, "+", ".")),
		GoVersion:  runtime.Version(), Compiler: runtime.Compiler, Platform: runtime.GOOS + "/" + runtime.GOARCH,
	})
}

// readyLag is how many committed entries a server may still have to apply
// and be ready; a restarted server is not ready until it has caught up.
const readyLag = 100

func (a *Agent) serveReady(w http.ResponseWriter, r *http.Request) {
	_, leader := a.raft.LeaderWithID()
	switch {
	case a.shuttingDown.Load():
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
	case leader == "":
		http.Error(w, "no cluster leader", http.StatusServiceUnavailable)
	case a.disk.low.Load():
		http.Error(w, "data dir almost full: "+byteSize(a.disk.free.Load())+" free", http.StatusServiceUnavailable)
	case a.raft.AppliedIndex()+readyLag < a.raft.CommitIndex():
		http.Error(w, "catching up with the leader", http.StatusServiceUnavailable)
	case a.raft.State() != raft.Leader && a.behindLeader(r.Context()):
		// A restarted follower cannot tell on its own: the leader's
		// heartbeats carry no commit index, and replication to a follower
		// that was down resumes only after the leader's retry backoff.
		http.Error(w, "catching up with the leader", http.StatusServiceUnavailable)
	default:
		fmt.Fprintln(w, "ok")
	}
}

// behindLeader asks the leader how far it has applied; a follower that
// cannot ask counts as behind.
func (a *Agent) behindLeader(ctx context.Context) bool {
	addr, self, err := a.leaderHTTP()
	if err != nil || self {
		return err != nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := a.peerStatus(ctx, addr)
	return err != nil || a.fsm.AppliedIndex()+readyLag < st.AppliedIndex
}

func (a *Agent) serveAPIVersions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, metav1.APIVersions{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIVersions"},
		Versions:                   []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: a.cfg.httpAddr()}},
	})
}

func (a *Agent) serveAPIGroups(w http.ResponseWriter, r *http.Request) {
	groups := map[string]bool{}
	list := metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
	for _, k := range api.Kinds {
		if k.Group == "" || groups[k.Group] {
			continue
		}
		groups[k.Group] = true
		gv := metav1.GroupVersionForDiscovery{GroupVersion: k.APIVersion(), Version: k.Version}
		list.Groups = append(list.Groups, metav1.APIGroup{Name: k.Group, Versions: []metav1.GroupVersionForDiscovery{gv}, PreferredVersion: gv})
	}
	writeJSON(w, http.StatusOK, list)
}

var objectVerbs = metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

func (a *Agent) serveResourceList(w http.ResponseWriter, r *http.Request) {
	gv := "v1"
	if g := r.PathValue("group"); g != "" {
		gv = g + "/" + r.PathValue("version")
	}
	list := metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv}
	for _, k := range api.Kinds {
		if k.APIVersion() != gv {
			continue
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: k.Resource, SingularName: k.Singular, Namespaced: k.Namespaced, Kind: k.Kind, Verbs: objectVerbs, ShortNames: k.ShortNames,
		})
		if k.HasStatus {
			list.APIResources = append(list.APIResources, metav1.APIResource{
				Name: k.Resource + "/status", Namespaced: k.Namespaced, Kind: k.Kind, Verbs: metav1.Verbs{"get", "patch", "update"},
			})
		}
	}
	if len(list.APIResources) == 0 {
		writeError(w, notFoundPath())
		return
	}
	writeJSON(w, http.StatusOK, list)
}
