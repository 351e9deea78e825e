package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"orch.dev/orch/internal/atomicfile"
	"orch.dev/orch/node/runtime"
)

// The images directory (DATA_DIR/images, --images-dir) is image delivery
// for a site without a registry and without a reachable control plane:
// every *.tar file in it (an OCI image layout or docker-save archive) is
// imported when the worker starts, before its pods, and whenever one is
// written or moved in (inotify; a scan every few seconds where inotify is
// unavailable). What was imported is remembered by file name, size and
// modification time in DATA_DIR/images.json, so a restart imports only
// new and changed files, and files whose images have gone from the
// runtime. A file that fails to import is tried again when it changes, or
// after a while (it may have been caught half-written).

const (
	imagesPollInterval  = 3 * time.Second  // the scan without inotify
	imagesRetryInterval = 30 * time.Second // the scan with inotify (retries, a lost watch)
)

// imageStore is the part of the runtime the images directory uses.
type imageStore interface {
	ImportImages(ctx context.Context, r io.Reader) ([]string, error)
	ListImages(ctx context.Context) ([]runtime.ImageInfo, error)
}

// importedFile is what the record keeps about one imported file.
type importedFile struct {
	Size    int64    `json:"size"`
	ModTime int64    `json:"modTime"` // Unix nanoseconds
	Images  []string `json:"images"`
}

type failedFile struct {
	size, modTime int64
	at            time.Time
}

type imagesDir struct {
	dir, record string
	rt          imageStore
	log         *slog.Logger
	now         func() time.Time

	imported map[string]importedFile // by file name
	failed   map[string]failedFile
	notify   *os.File // the inotify descriptor, nil when polling
}

func newImagesDir(dir, record string, rt imageStore, log *slog.Logger) *imagesDir {
	return &imagesDir{dir: dir, record: record, rt: rt, log: log, now: time.Now,
		imported: map[string]importedFile{}, failed: map[string]failedFile{}}
}

// open creates the directory, loads the record, checks that the images it
// lists are still present, and starts watching (before the first scan, so
// that no file written in between is missed).
func (d *imagesDir) open(ctx context.Context) error {
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return fmt.Errorf("--images-dir %s: %w", d.dir, err)
	}
	if b, err := os.ReadFile(d.record); err == nil {
		if err := json.Unmarshal(b, &d.imported); err != nil {
			d.log.Warn("the record of imported image files is unreadable: importing every file again", "file", d.record, "err", err)
			d.imported = map[string]importedFile{}
		}
	}
	d.forgetMissingImages(ctx)
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err == nil {
		_, err = unix.InotifyAddWatch(fd, d.dir, unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO|unix.IN_ATTRIB)
		if err != nil {
			unix.Close(fd)
		}
	}
	if err != nil {
		d.log.Warn("cannot watch the images directory: scanning it every few seconds", "dir", d.dir, "err", err)
		return nil
	}
	// Non-blocking, so the runtime's poller serves Read and Close ends it.
	d.notify = os.NewFile(uintptr(fd), "inotify")
	return nil
}

// forgetMissingImages drops the record of files whose images the runtime
// no longer has (removed by hand, or a new containerd root).
func (d *imagesDir) forgetMissingImages(ctx context.Context) {
	if len(d.imported) == 0 {
		return
	}
	imgs, err := d.rt.ListImages(ctx)
	if err != nil {
		return
	}
	have := map[string]bool{}
	for _, i := range imgs {
		have[i.Ref] = true
	}
	for name, f := range d.imported {
		for _, img := range f.Images {
			if n, err := runtime.NormalizeImageRef(img); err != nil || !have[n] {
				delete(d.imported, name)
				break
			}
		}
	}
}

// run scans the directory whenever it changes, until ctx ends.
func (d *imagesDir) run(ctx context.Context) {
	changed := make(chan struct{}, 1)
	interval := imagesPollInterval
	if d.notify != nil {
		interval = imagesRetryInterval
		go d.readEvents(changed)
		defer d.notify.Close()
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
		}
		d.scan(ctx)
	}
}

// readEvents signals changed for every batch of inotify events; the
// events themselves do not matter, the scan finds what changed.
func (d *imagesDir) readEvents(changed chan<- struct{}) {
	buf := make([]byte, 64*(unix.SizeofInotifyEvent+unix.NAME_MAX+1))
	for {
		if _, err := d.notify.Read(buf); err != nil {
			return
		}
		select {
		case changed <- struct{}{}:
		default:
		}
	}
}

// scan imports every *.tar file that is new or changed since its import.
func (d *imagesDir) scan(ctx context.Context) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		d.log.Warn("cannot read the images directory", "dir", d.dir, "err", err)
		return
	}
	present := map[string]bool{}
	changed := false
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".tar") || strings.HasPrefix(name, ".") || !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		present[name] = true
		size, mtime := info.Size(), info.ModTime().UnixNano()
		if f, ok := d.imported[name]; ok && f.Size == size && f.ModTime == mtime {
			continue
		}
		if f, ok := d.failed[name]; ok && f.size == size && f.modTime == mtime && d.now().Sub(f.at) < imagesRetryInterval {
			continue
		}
		images, err := d.importFile(ctx, name)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			d.failed[name] = failedFile{size: size, modTime: mtime, at: d.now()}
			d.log.Warn("cannot import an image archive of the images directory", "file", filepath.Join(d.dir, name), "err", err)
			continue
		}
		delete(d.failed, name)
		d.imported[name] = importedFile{Size: size, ModTime: mtime, Images: images}
		changed = true
		d.log.Info("imported images from the images directory", "file", name, "images", images)
	}
	for name := range d.imported {
		if !present[name] {
			delete(d.imported, name)
			changed = true
		}
	}
	for name := range d.failed {
		if !present[name] {
			delete(d.failed, name)
		}
	}
	if changed {
		d.save()
	}
}

func (d *imagesDir) importFile(ctx context.Context, name string) ([]string, error) {
	f, err := os.Open(filepath.Join(d.dir, name))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return d.rt.ImportImages(ctx, f)
}

func (d *imagesDir) save() {
	b, err := json.MarshalIndent(d.imported, "", "  ")
	if err == nil {
		err = atomicfile.Write(d.record, b, 0o600)
	}
	if err != nil {
		// Harmless: the files are imported again at the next start.
		d.log.Warn("cannot record the imported image files", "file", d.record, "err", err)
	}
}

// startImagesDir imports the images directory's archives, then watches
// it for new ones in the background (started with spawn).
func (w *Worker) startImagesDir(ctx context.Context, rt runtime.Runtime, spawn func(func())) error {
	if w.cfg.ImagesDir == "-" {
		return nil
	}
	dir := w.cfg.ImagesDir
	if dir == "" {
		dir = filepath.Join(w.cfg.DataDir, "images")
	}
	d := newImagesDir(dir, filepath.Join(w.cfg.DataDir, "images.json"), rt, w.log.With("component", "images"))
	if err := d.open(ctx); err != nil {
		return err
	}
	d.scan(ctx)
	spawn(func() { d.run(ctx) })
	return nil
}
