package cli

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v2"
)

// importTimeout replaces the default --request-timeout for image imports:
// the answer comes once every worker has imported the archive.
const importTimeout = "10m"

func imageCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:   "image",
		Usage:  "deliver images to the workers without a registry",
		Action: groupAction(e, []string{"image"}),
		Subcommands: []*cli.Command{{
			Name: "import",
			Usage: "send image archives (OCI image layout or `docker save` tar files) through the API server " +
				"to every Ready worker, or to one node with --node",
			ArgsUsage: "FILE.tar...",
			Description: "Each node reports the images it imported. The command waits up to " + importTimeout +
				" for every node to answer, unless --request-timeout is given.",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "node", Usage: "import on this `NODE` only"},
			},
			Action: e.imageImport,
		}},
	}
}

// imageImport prints one line per node and image imported; a node that
// failed is reported on stderr and makes the exit code 1.
func (e *env) imageImport(c *cli.Context) error {
	if c.NArg() == 0 {
		return errors.New("FILE is required: orchctl image import FILE.tar [--node NODE]")
	}
	if !c.IsSet("request-timeout") {
		if err := c.Set("request-timeout", importTimeout); err != nil {
			return err
		}
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	failed := false
	for _, file := range c.Args().Slice() {
		f, size, err := openArchive(file)
		if err != nil {
			return err
		}
		report, err := cl.ImportImages(e.ctx, io.NewSectionReader(f, 0, size), c.String("node"))
		f.Close()
		if err != nil {
			return &opError{op: "importing " + file, err: err}
		}
		for _, r := range report {
			switch {
			case r.Skipped != "":
				fmt.Fprintf(e.stderr, "Warning: node/%s skipped: %s\n", r.Node, r.Skipped)
			case r.Error != "":
				failed = true
				fmt.Fprintf(e.stderr, "error: node/%s: importing %s: %s\n", r.Node, file, oneLine(r.Error))
			default:
				for _, img := range r.Images {
					fmt.Fprintf(e.stdout, "node/%s: imported %s\n", r.Node, img)
				}
			}
		}
	}
	if failed {
		return exitCode(1)
	}
	return nil
}

// openArchive opens an image archive after a look at its first block, so
// that a file that is not a tar archive is refused before any upload.
func openArchive(file string) (*os.File, int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s is not a file", file)
	}
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	var why string
	switch {
	case n == 0:
		why = "the file is empty"
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		why = "it is gzip-compressed: decompress it first (gunzip), orch imports plain tar archives"
	default:
		// Only the first block was read: running out of it is no sign.
		_, err := tar.NewReader(bytes.NewReader(head)).Next()
		if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
			why = "it is not a tar archive (an OCI image layout or `docker save` output)"
		}
	}
	if why != "" {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %s; nothing was imported", file, why)
	}
	return f, st.Size(), nil
}
