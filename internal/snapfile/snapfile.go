// Package snapfile reads and writes the snapshot archives that
// `orchctl operator snapshot save` produces and restore consumes: a gzipped
// tar holding meta.json, state.bin (the FSM snapshot stream) and SHA256SUMS.
// Reading verifies every checksum, so a truncated or altered archive is
// refused before anything uses it.
package snapfile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"time"
)

// Meta describes a snapshot archive.
type Meta struct {
	FormatVersion int       `json:"formatVersion"`
	Index         uint64    `json:"index"`
	Term          uint64    `json:"term"`
	Servers       []Server  `json:"servers"`
	Size          int64     `json:"size"`
	CreatedAt     time.Time `json:"createdAt"`
	OrchVersion   string    `json:"orchVersion"`
}

// Server is a Raft server in the snapshot's configuration.
type Server struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// ErrInvalid means an archive is damaged or not a snapshot archive.
var ErrInvalid = errors.New("invalid snapshot archive")

const (
	metaName  = "meta.json"
	stateName = "state.bin"
	sumsName  = "SHA256SUMS"
)

// Write writes an archive whose state is the size bytes read from state.
func Write(w io.Writer, meta Meta, state io.Reader, size int64) error {
	meta.FormatVersion = 1
	meta.Size = size
	mb, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	// Fast compression: snapshots are saved while the cluster serves, and
	// the default level spent most of the save's CPU for little gain.
	gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	sums := map[string]string{}
	add := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: meta.CreatedAt, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(tw, h), r)
		if err != nil {
			return err
		}
		if n != size {
			return fmt.Errorf("%s: wrote %d bytes, expected %d", name, n, size)
		}
		sums[name] = hex.EncodeToString(h.Sum(nil))
		return nil
	}
	if err := add(metaName, int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return err
	}
	if err := add(stateName, size, state); err != nil {
		return err
	}
	list := fmt.Sprintf("%s  %s\n%s  %s\n", sums[metaName], metaName, sums[stateName], stateName)
	if err := add(sumsName, int64(len(list)), strings.NewReader(list)); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// Read reads and verifies an archive, copying its state to state.
func Read(r io.Reader, state io.Writer) (Meta, error) {
	var meta Meta
	bad := func(format string, args ...any) (Meta, error) {
		return Meta{}, fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
	}
	gz, err := gzip.NewReader(r)
	if err != nil {
		return bad("not a gzip stream: %v", err)
	}
	tr := tar.NewReader(gz)
	got := map[string]string{}
	var sums []byte
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return bad("truncated or damaged: %v", err)
		}
		var h hash.Hash = sha256.New()
		var dst io.Writer
		var mb bytes.Buffer
		switch hdr.Name {
		case metaName:
			dst = &mb
		case stateName:
			dst = state
		case sumsName:
			b, err := io.ReadAll(io.LimitReader(tr, 4096))
			if err != nil {
				return bad("reading %s: %v", sumsName, err)
			}
			sums = b
			continue
		default:
			return bad("unexpected file %q", hdr.Name)
		}
		if _, err := io.Copy(io.MultiWriter(dst, h), tr); err != nil {
			return bad("reading %s: %v", hdr.Name, err)
		}
		got[hdr.Name] = hex.EncodeToString(h.Sum(nil))
		if hdr.Name == metaName {
			if err := json.Unmarshal(mb.Bytes(), &meta); err != nil {
				return bad("meta.json: %v", err)
			}
		}
	}
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return bad("trailing data damaged: %v", err)
	}
	if sums == nil {
		return bad("missing %s (truncated?)", sumsName)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 {
			want[f[1]] = f[0]
		}
	}
	for _, name := range []string{metaName, stateName} {
		if got[name] == "" {
			return bad("missing %s", name)
		}
		if want[name] != got[name] {
			return bad("checksum mismatch for %s", name)
		}
	}
	if meta.FormatVersion != 1 {
		return bad("format version %d is not supported", meta.FormatVersion)
	}
	return meta, nil
}
