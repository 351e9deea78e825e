package kubelet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/internal/atomicfile"
)

// store keeps what the worker must remember across its own restarts
// without the control plane: the desired pods (one directory per pod UID,
// which also holds the pod's volumes) and the ConfigMaps and Secrets they
// use. Every file is replaced atomically; a crash leaves either the old or
// the new content.
//
//	DIR/pods/<uid>/pod.json          the pod, without status
//	DIR/pods/<uid>/volumes/<name>/   its volumes (see volumes.go)
//	DIR/objects/<kind>_<ns>_<name>.json  ConfigMaps and Secrets (mode 0600)
type store struct {
	dir string

	mu      sync.Mutex
	written map[types.UID][]byte // last content written per pod, to skip rewrites
}

func newStore(dir string) (*store, error) {
	for _, d := range []string{"pods", "objects"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	return &store{dir: dir, written: map[types.UID][]byte{}}, nil
}

func (s *store) podDir(uid types.UID) string { return filepath.Join(s.dir, "pods", string(uid)) }

// savePod records the desired pod; it writes only when something other
// than status or resourceVersion changed. Only the pod's worker calls it
// for a pod, so calls for one pod never overlap; calls for different pods
// write (and sync) at once, which lets the file system commit their
// journal entries together: a burst of pods is not a queue of fsyncs.
func (s *store) savePod(pod *corev1.Pod) error {
	p := pod.DeepCopy()
	p.Status = corev1.PodStatus{StartTime: pod.Status.StartTime}
	rv := p.ResourceVersion
	p.ResourceVersion = ""
	key, err := json.Marshal(p)
	if err != nil {
		return err
	}
	s.mu.Lock()
	same := bytes.Equal(s.written[pod.UID], key)
	s.mu.Unlock()
	if same {
		return nil
	}
	// The version kept is that of the last change written: a lower bound
	// of what the API had, which is all the relist after a restart needs.
	p.ResourceVersion = rv
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	dir := s.podDir(pod.UID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(dir, "pod.json"), b, 0o600); err != nil {
		return err
	}
	s.mu.Lock()
	s.written[pod.UID] = key
	s.mu.Unlock()
	return nil
}

// deletePod forgets the pod and removes its directory (its volumes must be
// torn down first).
func (s *store) deletePod(uid types.UID) error {
	s.mu.Lock()
	delete(s.written, uid)
	s.mu.Unlock()
	return os.RemoveAll(s.podDir(uid))
}

// loadPods returns the desired pods recorded. Unreadable records are
// reported and skipped.
func (s *store) loadPods() ([]*corev1.Pod, []error) {
	ents, err := os.ReadDir(filepath.Join(s.dir, "pods"))
	if err != nil {
		return nil, []error{err}
	}
	var pods []*corev1.Pod
	var errs []error
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.dir, "pods", e.Name(), "pod.json"))
		if errors.Is(err, os.ErrNotExist) {
			continue // a pod directory whose record was removed: cleaned later
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		p := &corev1.Pod{}
		if err := json.Unmarshal(b, p); err != nil || string(p.UID) != e.Name() {
			errs = append(errs, fmt.Errorf("pod record %s: unreadable (%v)", e.Name(), err))
			continue
		}
		k := p.DeepCopy()
		k.ResourceVersion = ""
		if key, err := json.Marshal(k); err == nil {
			s.mu.Lock()
			s.written[p.UID] = key
			s.mu.Unlock()
		}
		pods = append(pods, p)
	}
	return pods, errs
}

// podDirs lists the UIDs that have a directory, recorded or not.
func (s *store) podDirs() []types.UID {
	ents, _ := os.ReadDir(filepath.Join(s.dir, "pods"))
	var out []types.UID
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, types.UID(e.Name()))
		}
	}
	return out
}

func (s *store) objectPath(kind, ns, name string) string {
	return filepath.Join(s.dir, "objects", kind+"_"+ns+"_"+name+".json")
}

// saveObject caches a ConfigMap or Secret for use while offline.
func (s *store) saveObject(kind, ns, name string, obj any) error {
	b, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	path := s.objectPath(kind, ns, name)
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return nil
	}
	return atomicfile.Write(path, b, 0o600)
}

// loadObject reads a cached object; false when there is none.
func (s *store) loadObject(kind, ns, name string, into any) bool {
	b, err := os.ReadFile(s.objectPath(kind, ns, name))
	return err == nil && json.Unmarshal(b, into) == nil
}

// pruneObjects removes cached objects no desired pod refers to.
func (s *store) pruneObjects(keep map[string]bool) {
	ents, _ := os.ReadDir(filepath.Join(s.dir, "objects"))
	for _, e := range ents {
		name := strings.TrimSuffix(e.Name(), ".json")
		if !keep[name] {
			os.Remove(filepath.Join(s.dir, "objects", e.Name()))
		}
	}
}
