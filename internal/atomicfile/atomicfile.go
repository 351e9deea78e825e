// Package atomicfile owns replacing a small file so that a crash leaves
// either its old or its new content.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data (mode perm): written to a temporary file of
// its own in the same directory (so concurrent writers of one path do not
// share it), synced, renamed over path, and the directory synced. Readers
// and crashes see the old or the new content.
func Write(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
