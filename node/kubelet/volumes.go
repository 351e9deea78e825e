package kubelet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"orch.dev/orch/internal/atomicfile"
	"orch.dev/orch/node/runtime"
)

// Volumes live under the pod's directory, DATA/pods/<uid>/volumes/<name>:
// emptyDir is a directory shared by every container that mounts it (a
// tmpfs for medium Memory when Config.Tmpfs); configMap and secret volumes
// are files written there (secret volumes on a tmpfs when Config.Tmpfs, so
// their content never reaches the disk); hostPath is used in place.

func (k *Kubelet) volumesDir(pod *corev1.Pod) string {
	return filepath.Join(k.store.podDir(pod.UID), "volumes")
}

// setUpVolumes prepares every volume of the pod and returns the host path
// of each by name. It is idempotent: configMap and secret files are
// rewritten only when their content changed.
func (k *Kubelet) setUpVolumes(pod *corev1.Pod, objs *objects) (map[string]string, error) {
	paths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(k.volumesDir(pod), v.Name)
		var err error
		switch {
		case v.EmptyDir != nil:
			err = k.ensureDir(dir, v.EmptyDir.Medium == corev1.StorageMediumMemory)
		case v.HostPath != nil:
			dir = v.HostPath.Path
			err = hostPath(v.HostPath)
		case v.ConfigMap != nil:
			var cm *corev1.ConfigMap
			if cm, err = objs.configMap(v.ConfigMap.Name); err != nil {
				break
			}
			if cm == nil && !optional(v.ConfigMap.Optional) {
				err = configErrorf("configmap %q not found", v.ConfigMap.Name)
				break
			}
			data := map[string][]byte{}
			if cm != nil {
				for key, val := range cm.Data {
					data[key] = []byte(val)
				}
				for key, val := range cm.BinaryData {
					data[key] = val
				}
			}
			if err = k.ensureDir(dir, false); err == nil {
				err = writeVolumeFiles(dir, data, v.ConfigMap.Items, v.ConfigMap.DefaultMode, 0o644, v.ConfigMap.Optional)
			}
		case v.Secret != nil:
			var s *corev1.Secret
			if s, err = objs.secret(v.Secret.SecretName); err != nil {
				break
			}
			if s == nil && !optional(v.Secret.Optional) {
				err = configErrorf("secret %q not found", v.Secret.SecretName)
				break
			}
			data := map[string][]byte{}
			if s != nil {
				for key, val := range secretData(s) {
					data[key] = []byte(val)
				}
			}
			if err = k.ensureDir(dir, true); err == nil {
				err = writeVolumeFiles(dir, data, v.Secret.Items, v.Secret.DefaultMode, 0o400, v.Secret.Optional)
			}
		default:
			err = configErrorf("volume type not supported")
		}
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		paths[v.Name] = dir
	}
	return paths, nil
}

// ensureDir creates a volume directory, with a tmpfs on it when memory is
// asked for and the kubelet may mount.
func (k *Kubelet) ensureDir(dir string, memory bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if !memory || !k.cfg.Tmpfs || isMountPoint(dir) {
		return nil
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("tmpfs on %s: %w", dir, err)
	}
	return nil
}

func isMountPoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// tearDownVolumes unmounts the pod's tmpfs volumes; the store removes the
// directories with the pod.
func (k *Kubelet) tearDownVolumes(pod *corev1.Pod) error {
	return unmountUnder(k.volumesDir(pod))
}

// unmountUnder unmounts every mount point in dir's subtree, deepest first.
func unmountUnder(dir string) error {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			mounts = append(mounts, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mounts)))
	var errs []error
	for _, m := range mounts {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// hostPath checks (and for the *OrCreate types creates) a hostPath volume.
func hostPath(v *corev1.HostPathVolumeSource) error {
	t := corev1.HostPathUnset
	if v.Type != nil {
		t = *v.Type
	}
	st, err := os.Stat(v.Path)
	switch t {
	case corev1.HostPathUnset:
		if err != nil {
			// Kubernetes mounts whatever is (or is not) there; the runtime
			// needs the path to exist, so it is created as a directory.
			return os.MkdirAll(v.Path, 0o755)
		}
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if err != nil {
			return os.MkdirAll(v.Path, 0o755)
		}
		if !st.IsDir() {
			return configErrorf("%s is not a directory", v.Path)
		}
		return nil
	case corev1.HostPathFileOrCreate:
		if err != nil {
			if err := os.MkdirAll(filepath.Dir(v.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(v.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if st.IsDir() {
			return configErrorf("%s is a directory, not a file", v.Path)
		}
		return nil
	}
	if err != nil {
		return configErrorf("hostPath %s: %v", v.Path, err)
	}
	want := map[corev1.HostPathType]fs.FileMode{corev1.HostPathDirectory: fs.ModeDir, corev1.HostPathSocket: fs.ModeSocket,
		corev1.HostPathCharDev: fs.ModeCharDevice | fs.ModeDevice, corev1.HostPathBlockDev: fs.ModeDevice}
	switch t {
	case corev1.HostPathFile:
		if !st.Mode().IsRegular() {
			return configErrorf("%s is not a file", v.Path)
		}
	default:
		m, ok := want[t]
		if !ok {
			return configErrorf("hostPath type %q is not supported", t)
		}
		if st.Mode()&m != m || (t == corev1.HostPathBlockDev && st.Mode()&fs.ModeCharDevice != 0) {
			return configErrorf("%s is not a %s", v.Path, t)
		}
	}
	return nil
}

// writeVolumeFiles makes dir hold exactly the projected keys: all of data,
// or the listed items at their paths. Each file is replaced atomically.
func writeVolumeFiles(dir string, data map[string][]byte, items []corev1.KeyToPath, defMode *int32, fallback os.FileMode, opt *bool) error {
	mode := fallback
	if defMode != nil {
		mode = os.FileMode(*defMode)
	}
	type file struct {
		data []byte
		mode os.FileMode
	}
	files := map[string]file{}
	if len(items) == 0 {
		for k, v := range data {
			files[k] = file{v, mode}
		}
	} else {
		for _, it := range items {
			v, ok := data[it.Key]
			if !ok {
				if optional(opt) {
					continue
				}
				return configErrorf("key %q not found", it.Key)
			}
			m := mode
			if it.Mode != nil {
				m = os.FileMode(*it.Mode)
			}
			files[it.Path] = file{v, m}
		}
	}
	for p, f := range files {
		clean := filepath.Clean(p)
		if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return configErrorf("path %q leaves the volume", p)
		}
		path := filepath.Join(dir, clean)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if old, err := os.ReadFile(path); err == nil && string(old) == string(f.data) {
			if st, err := os.Stat(path); err == nil && st.Mode().Perm() == f.mode.Perm() {
				continue
			}
		}
		if err := atomicfile.Write(path, f.data, f.mode.Perm()); err != nil {
			return err
		}
	}
	// Keys that went away go away.
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		if _, ok := files[rel]; !ok {
			os.Remove(path)
		}
		return nil
	})
}

// containerMounts turns a container's volumeMounts into runtime mounts.
func containerMounts(c *corev1.Container, paths map[string]string) ([]runtime.Mount, error) {
	var out []runtime.Mount
	for _, m := range c.VolumeMounts {
		host, ok := paths[m.Name]
		if !ok {
			return nil, configErrorf("volumeMount %q: no volume of that name", m.Name)
		}
		if m.SubPath != "" {
			sub := filepath.Clean(m.SubPath)
			if filepath.IsAbs(sub) || sub == ".." || strings.HasPrefix(sub, "../") {
				return nil, configErrorf("volumeMount %q: subPath %q leaves the volume", m.Name, m.SubPath)
			}
			host = filepath.Join(host, sub)
			if _, err := os.Stat(host); os.IsNotExist(err) {
				if err := os.MkdirAll(host, 0o755); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, runtime.Mount{HostPath: host, ContainerPath: m.MountPath, ReadOnly: m.ReadOnly})
	}
	return out, nil
}
