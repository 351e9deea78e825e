// Package execstream is the wire format of a non-interactive exec answer,
// shared by the worker API (which writes it), the API server (which passes
// it through) and clients such as orchctl (which read it). It owns nothing
// else and depends on the standard library only.
//
// The body of a successful POST .../exec answer (Content-Type
// ContentType) is a sequence of frames: one byte naming the stream, four
// bytes of big-endian payload length, the payload. Stdout and stderr frames
// carry output as it is produced; the last frame is an exit frame whose
// payload is JSON {"exitCode": N} or {"error": "why the command could not
// be run"}. A body that ends without an exit frame means the connection
// broke.
package execstream

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// ContentType marks an exec stream.
const ContentType = "application/vnd.orch.exec.v1"

// Stream identifiers.
const (
	Stdout byte = 1
	Stderr byte = 2
	Exit   byte = 3
)

// maxFrame bounds one frame's payload.
const maxFrame = 1 << 20

// Writer writes frames; it is safe for concurrent use, and flushes after
// every frame when the underlying writer is an http.ResponseWriter.
type Writer struct {
	mu sync.Mutex
	w  io.Writer
	f  http.Flusher
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	f, _ := w.(http.Flusher)
	return &Writer{w: w, f: f}
}

func (w *Writer) frame(stream byte, p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(p) > 0 || stream == Exit {
		n := min(len(p), maxFrame)
		var hdr [5]byte
		hdr[0] = stream
		binary.BigEndian.PutUint32(hdr[1:], uint32(n))
		if _, err := w.w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
		if stream == Exit {
			break
		}
	}
	if w.f != nil {
		w.f.Flush()
	}
	return nil
}

type streamWriter struct {
	w  *Writer
	id byte
}

func (s streamWriter) Write(p []byte) (int, error) {
	if err := s.w.frame(s.id, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Stdout is an io.Writer for the command's standard output.
func (w *Writer) Stdout() io.Writer { return streamWriter{w, Stdout} }

// Stderr is an io.Writer for the command's standard error.
func (w *Writer) Stderr() io.Writer { return streamWriter{w, Stderr} }

// ExitStatus is the payload of the exit frame.
type ExitStatus struct {
	ExitCode int    `json:"exitCode"`
	Error    string `json:"error,omitempty"`
}

// Exit writes the exit frame: the command's exit code, or runErr when it
// could not be run.
func (w *Writer) Exit(code int, runErr error) error {
	st := ExitStatus{ExitCode: code}
	if runErr != nil {
		st.Error = runErr.Error()
	}
	b, _ := json.Marshal(st)
	return w.frame(Exit, b)
}

// ErrNoExit means the stream ended before the exit frame.
var ErrNoExit = errors.New("exec stream ended before the command finished")

// Read copies the output frames of r to stdout and stderr and returns the
// command's exit code. The error is non-nil when the command could not be
// run or the stream broke.
func Read(r io.Reader, stdout, stderr io.Writer) (int, error) {
	var hdr [5]byte
	buf := make([]byte, 32<<10)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return 0, ErrNoExit
			}
			return 0, err
		}
		n := binary.BigEndian.Uint32(hdr[1:])
		if n > maxFrame {
			return 0, fmt.Errorf("exec stream: frame of %d bytes", n)
		}
		if int(n) > len(buf) {
			buf = make([]byte, n)
		}
		p := buf[:n]
		if _, err := io.ReadFull(r, p); err != nil {
			return 0, ErrNoExit
		}
		switch hdr[0] {
		case Stdout:
			if stdout != nil {
				stdout.Write(p)
			}
		case Stderr:
			if stderr != nil {
				stderr.Write(p)
			}
		case Exit:
			var st ExitStatus
			if err := json.Unmarshal(p, &st); err != nil {
				return 0, fmt.Errorf("exec stream: exit frame: %w", err)
			}
			if st.Error != "" {
				return st.ExitCode, errors.New(st.Error)
			}
			return st.ExitCode, nil
		default:
			return 0, fmt.Errorf("exec stream: unknown stream %d", hdr[0])
		}
	}
}
