package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
)

// Write replaces the file with the given mode and leaves no temporary file;
// writers of one path at once each succeed and one of them wins whole.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	if err := Write(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || string(b) != "new" {
		t.Fatalf("content %q (%v), want new", b, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}

	var wg sync.WaitGroup
	var want []string
	for i := range 8 {
		v := fmt.Sprintf("writer %d", i)
		want = append(want, v)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Write(path, []byte(v), 0o600); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if b, _ := os.ReadFile(path); !slices.Contains(want, string(b)) {
		t.Errorf("after concurrent writes: %q, want one writer's whole content", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d entries in the directory, want only the file: %v", len(ents), ents)
	}
}
