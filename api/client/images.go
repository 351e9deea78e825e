package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// ImagesImportPath is where image archives are uploaded (agent/http_images.go).
const ImagesImportPath = "/v1/images/import"

// ImageImport is what one node did with an uploaded image archive.
type ImageImport struct {
	Node string `json:"node"`
	// Images are the names the node imported.
	Images []string `json:"images,omitempty"`
	// Error says why the import failed on the node.
	Error string `json:"error,omitempty"`
	// Skipped says why the node was not sent the archive (not Ready).
	Skipped string `json:"skipped,omitempty"`
}

// ImportImages uploads an OCI image layout or docker-save archive; the
// API server passes it to every Ready worker, or only to node when one is
// named, and reports per node, sorted by name. A failure on some nodes is
// not an error here: the caller reads each ImageImport. The archive is
// read again from its start if the upload must be retried on another
// server.
func (c *Client) ImportImages(ctx context.Context, archive *io.SectionReader, node string) ([]ImageImport, error) {
	q := url.Values{}
	if node != "" {
		q.Set("node", node)
	}
	// Streamed: the answer comes once every node has imported, which for
	// a large archive takes longer than one plain attempt may.
	resp, err := c.Do(ctx, Request{Method: http.MethodPost, Path: ImagesImportPath, Query: q, BodyAt: archive,
		ContentType: "application/x-tar", Stream: true})
	if err != nil {
		return nil, err
	}
	defer resp.Stream.Close()
	var ans struct {
		Nodes []ImageImport `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Stream).Decode(&ans); err != nil {
		return nil, fmt.Errorf("%s: reading the import report: %w", resp.Server, err)
	}
	return ans.Nodes, nil
}
