package imagebuild

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Push uploads img to the registry named in img.Name over plain HTTP (the
// distribution API: blob uploads, then the manifest under its tag). It is
// meant for registries the tests run on loopback; there is no TLS or auth.
// Blobs the registry already has are skipped.
func Push(ctx context.Context, hc *http.Client, img Image) error {
	b, err := build(img, nil)
	if err != nil {
		return err
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	base := "http://" + b.ref.Domain + "/v2/" + b.ref.Path
	for _, bl := range b.blobs {
		if err := pushBlob(ctx, hc, base, bl); err != nil {
			return fmt.Errorf("push %s: blob %s: %w", b.ref, bl.desc.Digest, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/manifests/"+b.ref.Tag, bytes.NewReader(b.manifest.data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", b.manifest.desc.MediaType)
	if err := do(hc, req, http.StatusCreated); err != nil {
		return fmt.Errorf("push %s: manifest: %w", b.ref, err)
	}
	return nil
}

func pushBlob(ctx context.Context, hc *http.Client, base string, bl blob) error {
	head, err := http.NewRequestWithContext(ctx, http.MethodHead, base+"/blobs/"+string(bl.desc.Digest), nil)
	if err != nil {
		return err
	}
	if do(hc, head, http.StatusOK) == nil {
		return nil
	}
	start, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/blobs/uploads/", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(start)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("start upload: %s", resp.Status)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("start upload: %w", err)
	}
	q := loc.Query()
	q.Set("digest", string(bl.desc.Digest))
	loc.RawQuery = q.Encode()
	put, err := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), bytes.NewReader(bl.data))
	if err != nil {
		return err
	}
	put.Header.Set("Content-Type", "application/octet-stream")
	return do(hc, put, http.StatusCreated)
}

func do(hc *http.Client, req *http.Request, want int) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: %s %s", req.Method, (&url.URL{Path: req.URL.Path}).String(), resp.Status, bytes.TrimSpace(msg))
	}
	return nil
}
