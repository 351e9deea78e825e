package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"orch.dev/orch/api"
	"orch.dev/orch/internal/gossipmeta"
)

// The gossip keyring API:
//
//	GET    /v1/gossip/keyring                  the keys themselves (workers, servers, admins): what members follow
//	GET    /v1/operator/gossip/keyring         GossipKeyringStatus: key ids and which live member holds which (admins)
//	POST   /v1/operator/gossip/keyring         install: {"key": base64 of 32 bytes}, or {} for a fresh random key
//	PUT    /v1/operator/gossip/keyring/primary use: {"id": ID}; refused until every live member holds the key
//	DELETE /v1/operator/gossip/keyring/{id}    remove; refused for the primary key and until no live member still encrypts with it
//
// The keys never appear in the operator API's answers, only their ids.

// GossipKeyringStatus answers GET /v1/operator/gossip/keyring.
type GossipKeyringStatus struct {
	Primary string             `json:"primary"`
	Keys    []GossipKeyStatus  `json:"keys"`
	Members []GossipMemberKeys `json:"members"`
}

// GossipKeyStatus is one key of the stored keyring and how far it spread.
type GossipKeyStatus struct {
	ID      string `json:"id"`
	Primary bool   `json:"primary"`
	// Holders is how many live members hold the key, PrimaryOf how many
	// encrypt with it, out of Live members.
	Holders   int `json:"holders"`
	PrimaryOf int `json:"primaryOf"`
	Live      int `json:"live"`
}

// GossipMemberKeys is a live member and the key ids it announces, its
// primary first.
type GossipMemberKeys struct {
	Name   string   `json:"name"`
	Role   string   `json:"role"`
	Status string   `json:"status"`
	Keys   []string `json:"keys"`
}

var gossipKeyResource = schema.GroupResource{Resource: "gossip keys"}

func (a *Agent) registerGossipKeyring(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/gossip/keyring", a.serveGossipKeyring)
	mux.HandleFunc("GET /v1/operator/gossip/keyring", a.serveGossipKeyringStatus)
	mux.HandleFunc("POST /v1/operator/gossip/keyring", a.serveGossipKeyInstall)
	mux.HandleFunc("PUT /v1/operator/gossip/keyring/primary", a.serveGossipKeyUse)
	mux.HandleFunc("DELETE /v1/operator/gossip/keyring/{id}", a.serveGossipKeyRemove)
}

func (a *Agent) serveGossipKeyring(w http.ResponseWriter, r *http.Request) {
	view, err := a.readView(r.Context(), r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	k, err := a.storedGossipKeyring(view)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, k)
}

func (a *Agent) serveGossipKeyringStatus(w http.ResponseWriter, r *http.Request) {
	view, err := a.readView(r.Context(), r.URL.Query())
	if err != nil {
		writeError(w, err)
		return
	}
	k, err := a.storedGossipKeyring(view)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, keyringStatus(k, a.memberKeys()))
}

func keyringStatus(k gossipmeta.Keyring, members []GossipMemberKeys) GossipKeyringStatus {
	st := GossipKeyringStatus{Primary: gossipmeta.KeyID(k.Primary), Members: members, Keys: []GossipKeyStatus{}}
	for _, id := range k.IDs() {
		ks := GossipKeyStatus{ID: id, Primary: id == st.Primary, Live: len(members)}
		for _, m := range members {
			if slices.Contains(m.Keys, id) {
				ks.Holders++
			}
			if len(m.Keys) > 0 && m.Keys[0] == id {
				ks.PrimaryOf++
			}
		}
		st.Keys = append(st.Keys, ks)
	}
	return st
}

// keyringRequest is the body of install and use.
type keyringRequest struct {
	Key string `json:"key,omitempty"` // install: base64 of 32 bytes; empty: a fresh random key
	ID  string `json:"id,omitempty"`  // use
}

func readKeyringRequest(w http.ResponseWriter, r *http.Request) (keyringRequest, error) {
	var req keyringRequest
	body, err := readBody(w, r)
	if err == nil && len(body) > 0 {
		if jerr := json.Unmarshal(body, &req); jerr != nil {
			err = apierrors.NewBadRequest("invalid keyring request: " + jerr.Error())
		}
	}
	return req, err
}

func (a *Agent) serveGossipKeyInstall(w http.ResponseWriter, r *http.Request) {
	req, err := readKeyringRequest(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	key := gossipmeta.NewKey()
	if req.Key != "" {
		key, err = base64.StdEncoding.DecodeString(req.Key)
		if err != nil || len(key) != gossipmeta.KeyLen {
			writeError(w, apierrors.NewBadRequest(fmt.Sprintf("KEY: want %d random bytes, base64-encoded (`head -c 32 /dev/urandom | base64`)", gossipmeta.KeyLen)))
			return
		}
	}
	id := gossipmeta.KeyID(key)
	noteAuditName(r, id)
	installed := false
	err = a.updateGossipKeyring(r.Context(), func(k *gossipmeta.Keyring) (bool, error) {
		if k.Has(key) {
			return false, nil
		}
		if len(k.Keys) >= gossipmeta.MaxKeys {
			return false, apierrors.NewConflict(gossipKeyResource, id, fmt.Errorf("the keyring holds %d keys already, the most it may: remove one first (orchctl operator gossip keyring remove ID)", len(k.Keys)))
		}
		k.Keys = append(k.Keys, key)
		installed = true
		return true, nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	if installed {
		a.logger.Info("gossip key installed", "id", id, "by", PrincipalOf(r).Name)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "installed": installed})
}

func (a *Agent) serveGossipKeyUse(w http.ResponseWriter, r *http.Request) {
	req, err := readKeyringRequest(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	id := req.ID
	noteAuditName(r, id)
	err = a.updateGossipKeyring(r.Context(), func(k *gossipmeta.Keyring) (bool, error) {
		key, ok := k.ByID(id)
		if !ok {
			return false, apierrors.NewNotFound(gossipKeyResource, fmt.Sprintf("%s (ID: see orchctl operator gossip keyring list)", id))
		}
		if gossipmeta.KeyID(k.Primary) == id {
			return false, nil
		}
		if lag := a.keyringLaggards(func(ids []string) bool { return slices.Contains(ids, id) }); len(lag) > 0 {
			return false, apierrors.NewConflict(gossipKeyResource, id, fmt.Errorf("live members %s do not hold the key yet; wait until `orchctl operator gossip keyring list` shows every member holding it", strings.Join(lag, ", ")))
		}
		k.Primary = key
		return true, nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	a.logger.Info("gossip key made primary", "id", id, "by", PrincipalOf(r).Name)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "primary": true})
}

func (a *Agent) serveGossipKeyRemove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := a.updateGossipKeyring(r.Context(), func(k *gossipmeta.Keyring) (bool, error) {
		key, ok := k.ByID(id)
		if !ok {
			return false, apierrors.NewNotFound(gossipKeyResource, fmt.Sprintf("%s (ID: see orchctl operator gossip keyring list)", id))
		}
		if gossipmeta.KeyID(k.Primary) == id {
			return false, apierrors.NewConflict(gossipKeyResource, id, errors.New("it is the primary key: make another key primary first (orchctl operator gossip keyring use ID)"))
		}
		if lag := a.keyringLaggards(func(ids []string) bool { return len(ids) > 0 && ids[0] != id }); len(lag) > 0 {
			return false, apierrors.NewConflict(gossipKeyResource, id, fmt.Errorf("live members %s still encrypt with it; wait until `orchctl operator gossip keyring list` shows every member on the new primary", strings.Join(lag, ", ")))
		}
		k.Keys = slices.DeleteFunc(k.Keys, func(o []byte) bool { return gossipmeta.KeyID(o) == gossipmeta.KeyID(key) })
		return true, nil
	})
	if err != nil {
		writeError(w, err)
		return
	}
	a.logger.Info("gossip key removed", "id", id, "by", PrincipalOf(r).Name)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "removed": true})
}

// keyringLaggards are the live members whose announced key ids do not
// satisfy ready.
func (a *Agent) keyringLaggards(ready func(ids []string) bool) []string {
	var out []string
	for _, m := range a.memberKeys() {
		if !ready(m.Keys) {
			out = append(out, m.Name)
		}
	}
	return out
}

// updateGossipKeyring changes the stored keyring with change, compare-and-
// set on the version it read linearizably; change returns false to write
// nothing.
func (a *Agent) updateGossipKeyring(ctx context.Context, change func(*gossipmeta.Keyring) (bool, error)) error {
	if a.gossip.keyring == nil {
		return apierrors.NewBadRequest("gossip is not encrypted on this server (no cluster secret): there is no keyring to change")
	}
	for attempt := 1; ; attempt++ {
		if err := a.linearizableRead(ctx); err != nil {
			return err
		}
		k, err := a.storedGossipKeyring(a.fsm.View())
		if err != nil {
			return err
		}
		write, err := change(&k)
		if err != nil || !write {
			return err
		}
		if err := k.Validate(); err != nil {
			return apierrors.NewBadRequest(err.Error())
		}
		s := gossipKeyringSecret(k)
		api.Secret.SetTypeMeta(s)
		if k.Version == 0 {
			if err := a.ensureSystemNamespace(ctx); err != nil {
				return err
			}
			err = a.serverRequest(ctx, http.MethodPost, api.Secret.Path(SystemNamespace), s)
		} else {
			s.ResourceVersion = strconv.FormatUint(k.Version, 10)
			err = a.serverRequest(ctx, http.MethodPut, api.Secret.ObjectPath(SystemNamespace, GossipKeyringSecret), s)
		}
		if (apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) && attempt < 16 {
			continue
		}
		return err
	}
}
