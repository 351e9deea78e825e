package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/snapfile"
)

// healthCells are list-peers' HEALTH, LAST CONTACT, APPLIED and LAG.
func (p peer) healthCells() []string {
	if p.Healthy == nil {
		return []string{"unknown", "-", "-", "-"}
	}
	health := "healthy"
	switch {
	case p.Status != "" && p.Status != "alive":
		health = p.Status
	case p.DiskLow:
		health = "disk full"
	case !*p.Healthy && p.LastContactMs == nil:
		health = "unreachable"
	case !*p.Healthy:
		health = "unhealthy"
	}
	contact, applied, lag := "-", "-", "-"
	if p.LastContactMs != nil {
		switch ms := *p.LastContactMs; {
		case p.Leader:
		case ms < 0:
			contact = "never"
		default:
			contact = (time.Duration(ms) * time.Millisecond).String()
		}
	}
	if p.AppliedIndex != nil {
		applied = strconv.FormatUint(*p.AppliedIndex, 10)
	}
	if p.Lag != nil {
		lag = strconv.FormatUint(*p.Lag, 10)
	}
	return []string{health, contact, applied, lag}
}

// snapshotRestore uploads a snapshot archive to the leader, which replaces
// the cluster state with it. The file is verified here first, so that a
// damaged file is refused before anything is sent; the leader verifies it
// again and changes nothing when it does not verify.
func (e *env) snapshotRestore(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("FILE is required: orchctl operator snapshot restore FILE")
	}
	file := c.Args().First()
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return err
	}
	if len(data) == 0 {
		return fmt.Errorf("%s: the file is empty; nothing was restored", file)
	}
	if _, err := snapfile.Read(bytes.NewReader(data), io.Discard); err != nil {
		return fmt.Errorf("%s: %w; nothing was restored", file, err)
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	resp, err := cl.Do(e.ctx, client.Request{Method: http.MethodPost, Path: "/v1/operator/snapshot/restore", Body: data,
		ContentType: "application/octet-stream"})
	if err != nil {
		return err
	}
	var res struct {
		Index         uint64 `json:"index"`
		SnapshotIndex uint64 `json:"snapshotIndex"`
		Objects       int    `json:"objects"`
		DurationMs    int64  `json:"durationMs"`
	}
	if err := json.Unmarshal(resp.Body, &res); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Restored %s (saved at index %d): %d objects, now at index %d (%s)\n",
		file, res.SnapshotIndex, res.Objects, res.Index, time.Duration(res.DurationMs)*time.Millisecond)
	return nil
}
