package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"orch.dev/orch/api/client"
	"orch.dev/orch/internal/snapfile"
)

// peer is one Raft server, as GET /v1/operator/raft/peers reports it and
// as `list-peers -o json` prints it (DESIGN.md contract: id, address,
// leader, voter; the health fields are the leader's view, absent when no
// leader answered).
type peer struct {
	ID            string  `json:"id"`
	Address       string  `json:"address"`
	Leader        bool    `json:"leader"`
	Voter         bool    `json:"voter"`
	Status        string  `json:"status,omitempty"`
	Healthy       *bool   `json:"healthy,omitempty"`
	LastContactMs *int64  `json:"lastContactMs,omitempty"`
	AppliedIndex  *uint64 `json:"appliedIndex,omitempty"`
	Lag           *uint64 `json:"lag,omitempty"`
	DiskLow       bool    `json:"diskLow,omitempty"`
}

func outputFlag(formats string) cli.Flag {
	return &cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "output `FORMAT`: " + formats}
}

func operatorCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:  "operator",
		Usage: "cluster operations: Raft membership and leadership, snapshots, tokens, gossip keys, Secret re-sealing",
		Subcommands: []*cli.Command{
			{
				Name:   "raft",
				Usage:  "inspect and change the Raft group of the servers",
				Action: groupAction(e, []string{"operator", "raft"}),
				Subcommands: []*cli.Command{
					{Name: "list-peers", Usage: "list the Raft servers, which one leads, and how healthy each is (the leader's view)",
						Flags:  []cli.Flag{outputFlag("json"), &cli.BoolFlag{Name: "stale", Usage: "the answering server's configuration, without asking the leader (works without quorum)"}},
						Action: e.listPeers},
					{Name: "transfer-leader", Usage: "hand leadership to another voter (any, or --to NAME)",
						Flags:  []cli.Flag{&cli.StringFlag{Name: "to", Usage: "`NAME` of the server to lead"}},
						Action: e.transferLeader},
					{Name: "remove-peer", Usage: "remove a server from the Raft group", ArgsUsage: "NAME", Action: e.removePeer},
				},
			},
			{
				Name:   "snapshot",
				Usage:  "save and inspect snapshots of the cluster state",
				Action: groupAction(e, []string{"operator", "snapshot"}),
				Subcommands: []*cli.Command{
					{Name: "save", Usage: "download a verified snapshot of the cluster state", ArgsUsage: "FILE",
						Flags:  []cli.Flag{&cli.BoolFlag{Name: "stale", Usage: "snapshot the answering server's state instead of the leader's"}},
						Action: e.snapshotSave},
					{Name: "inspect", Usage: "verify a snapshot file and print what it holds", ArgsUsage: "FILE", Action: e.snapshotInspect},
					{Name: "restore", Usage: "replace the whole cluster state with a snapshot's (disaster recovery)", ArgsUsage: "FILE", Action: e.snapshotRestore},
				},
			},
			tokenCommand(e),   // cli/token.go
			gossipCommand(e),  // cli/gossip_keyring.go
			secretsCommand(e), // cli/secrets_reseal.go
		},
		Action: groupAction(e, []string{"operator"}),
	}
}

func (e *env) listPeers(c *cli.Context) error {
	out := c.String("output")
	if err := checkOutput(out, outTable, outJSON); err != nil {
		return err
	}
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.Args().First())
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	q := url.Values{}
	if c.Bool("stale") {
		q.Set("stale", "true")
	}
	var peers []peer
	if err := cl.GetJSON(e.ctx, "/v1/operator/raft/peers", q, &peers); err != nil {
		return err
	}
	if peers == nil {
		peers = []peer{}
	}
	if out == outJSON {
		return writeValue(e.stdout, outJSON, peers)
	}
	tw := newTabWriter(e.stdout)
	writeRow(tw, []string{"NODE", "ID", "ADDRESS", "STATE", "VOTER", "HEALTH", "LAST CONTACT", "APPLIED", "LAG"})
	for _, p := range peers {
		state := "follower"
		if p.Leader {
			state = "leader"
		}
		writeRow(tw, append([]string{p.ID, p.ID, p.Address, state, strconv.FormatBool(p.Voter)}, p.healthCells()...))
	}
	return tw.Flush()
}

func (e *env) transferLeader(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (name the new leader with --to)", c.Args().First())
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	q := url.Values{}
	if to := c.String("to"); to != "" {
		q.Set("to", to)
	}
	resp, err := cl.Do(e.ctx, client.Request{Method: http.MethodPost, Path: "/v1/operator/raft/transfer-leader", Query: q})
	if err != nil {
		return err
	}
	var res struct {
		Leader string `json:"leader"`
	}
	if err := json.Unmarshal(resp.Body, &res); err != nil {
		return err
	}
	if res.Leader == "" {
		fmt.Fprintln(e.stdout, "leadership transferred; no new leader is known yet")
		return nil
	}
	fmt.Fprintf(e.stdout, "leadership transferred to %s\n", res.Leader)
	return nil
}

func (e *env) removePeer(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("NAME is required: orchctl operator raft remove-peer NAME")
	}
	name := c.Args().First()
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	if _, err := cl.Do(e.ctx, client.Request{Method: http.MethodDelete, Path: "/v1/operator/raft/peers/" + url.PathEscape(name)}); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "peer %q removed\n", name)
	return nil
}

// snapshotSave downloads a snapshot into FILE.tmp while verifying it, and
// renames it to FILE only when every checksum matched: an interrupted or
// damaged download never leaves a FILE that looks good.
func (e *env) snapshotSave(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("FILE is required: orchctl operator snapshot save FILE")
	}
	file := c.Args().First()
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	q := url.Values{}
	if c.Bool("stale") {
		q.Set("stale", "true")
	}
	resp, err := cl.Do(e.ctx, client.Request{Method: http.MethodGet, Path: "/v1/operator/snapshot", Query: q, Stream: true})
	if err != nil {
		return err
	}
	defer resp.Stream.Close()
	meta, size, err := saveVerified(file, resp.Stream)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "Saved snapshot at index %d to %s (%d bytes)\n", meta.Index, file, size)
	return nil
}

// saveVerified writes r to file (through file.tmp) if it is a valid
// snapshot archive.
func saveVerified(file string, r io.Reader) (snapfile.Meta, int64, error) {
	tmp := file + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return snapfile.Meta{}, 0, err
	}
	fail := func(err error) (snapfile.Meta, int64, error) {
		f.Close()
		os.Remove(tmp)
		return snapfile.Meta{}, 0, err
	}
	cw := &countingWriter{w: f}
	tee := io.TeeReader(r, cw)
	meta, err := snapfile.Read(tee, io.Discard)
	if err != nil {
		return fail(fmt.Errorf("snapshot download failed verification, nothing saved: %w", err))
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fail(fmt.Errorf("snapshot download: %w", err))
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return snapfile.Meta{}, 0, err
	}
	if err := os.Rename(tmp, file); err != nil {
		os.Remove(tmp)
		return snapfile.Meta{}, 0, err
	}
	return meta, cw.n, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (e *env) snapshotInspect(c *cli.Context) error {
	if c.NArg() != 1 {
		return errors.New("FILE is required: orchctl operator snapshot inspect FILE")
	}
	f, err := os.Open(c.Args().First())
	if err != nil {
		return err
	}
	defer f.Close()
	meta, err := snapfile.Read(f, io.Discard)
	if err != nil {
		return fmt.Errorf("%s: %w", c.Args().First(), err)
	}
	tw := newTabWriter(e.stdout)
	writeRow(tw, []string{"Index", strconv.FormatUint(meta.Index, 10)})
	writeRow(tw, []string{"Term", strconv.FormatUint(meta.Term, 10)})
	writeRow(tw, []string{"Size", strconv.FormatInt(meta.Size, 10)})
	writeRow(tw, []string{"Created", meta.CreatedAt.UTC().Format(time.RFC3339)})
	writeRow(tw, []string{"Version", meta.OrchVersion})
	sort.Slice(meta.Servers, func(i, j int) bool { return meta.Servers[i].ID < meta.Servers[j].ID })
	for _, s := range meta.Servers {
		writeRow(tw, []string{"Server", fmt.Sprintf("%s %s voter=%t", s.ID, s.Address, s.Voter)})
	}
	return tw.Flush()
}
