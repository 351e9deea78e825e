package snapfile

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func archive(t *testing.T, state string) []byte {
	t.Helper()
	var b bytes.Buffer
	meta := Meta{Index: 42, Term: 3, Servers: []Server{{ID: "s1", Address: "127.0.0.11:7401", Voter: true}}, CreatedAt: time.Unix(1700000000, 0).UTC(), OrchVersion: "test"}
	if err := Write(&b, meta, strings.NewReader(state), int64(len(state))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestRoundTrip(t *testing.T) {
	state := strings.Repeat("state bytes ", 1000)
	var got bytes.Buffer
	meta, err := Read(bytes.NewReader(archive(t, state)), &got)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != state || meta.Index != 42 || meta.Term != 3 || meta.Size != int64(len(state)) || len(meta.Servers) != 1 || meta.FormatVersion != 1 {
		t.Fatalf("round trip changed the archive: %+v", meta)
	}
}

func TestWriteRefusesAShortState(t *testing.T) {
	if err := Write(io.Discard, Meta{}, strings.NewReader("abc"), 10); err == nil {
		t.Fatal("a state shorter than its declared size was written without error")
	}
}

// Every truncation and every altered byte of the state is refused.
func TestDamageIsRefused(t *testing.T) {
	full := archive(t, strings.Repeat("x", 5000))
	for cut := 0; cut < len(full); cut += 7 {
		if _, err := Read(bytes.NewReader(full[:cut]), io.Discard); !errors.Is(err, ErrInvalid) {
			t.Fatalf("archive cut at %d of %d bytes: got %v, want ErrInvalid", cut, len(full), err)
		}
	}
	// Alter the uncompressed content: flip a byte of the state inside the tar.
	zr, _ := gzip.NewReader(bytes.NewReader(full))
	raw, _ := io.ReadAll(zr)
	i := bytes.Index(raw, []byte("xxxx"))
	raw[i] = 'y'
	var rezipped bytes.Buffer
	zw := gzip.NewWriter(&rezipped)
	zw.Write(raw)
	zw.Close()
	if _, err := Read(&rezipped, io.Discard); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "checksum mismatch for state.bin") {
		t.Fatalf("altered state: got %v", err)
	}
	if _, err := Read(strings.NewReader("not a gzip stream"), io.Discard); !errors.Is(err, ErrInvalid) {
		t.Fatalf("garbage: got %v", err)
	}
}
