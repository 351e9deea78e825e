package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"orch.dev/orch/api"
)

// ListOptions selects objects.
type ListOptions struct {
	LabelSelector string
	FieldSelector string
	Limit         int
	Continue      string
	// Stale reads the answering server's local state instead of a
	// linearizable read (cheaper; may lag the leader by a few entries).
	Stale bool
	// ResourceVersion: a list is served from a state at least this new;
	// a watch resumes after this version.
	ResourceVersion string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.LabelSelector != "" {
		q.Set("labelSelector", o.LabelSelector)
	}
	if o.FieldSelector != "" {
		q.Set("fieldSelector", o.FieldSelector)
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Continue != "" {
		q.Set("continue", o.Continue)
	}
	if o.Stale {
		q.Set("stale", "true")
	}
	if o.ResourceVersion != "" {
		q.Set("resourceVersion", o.ResourceVersion)
	}
	return q
}

// List is a page of objects.
type List struct {
	Items           []api.Object
	ResourceVersion string
	Continue        string
}

func kindOf(obj api.Object) (*api.Kind, error) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	if k, ok := api.KindByName(gvk.Kind); ok {
		return k, nil
	}
	return nil, fmt.Errorf("object %q has no supported kind (kind %q)", obj.GetName(), gvk.Kind)
}

func decodeObject(k *api.Kind, b []byte) (api.Object, error) {
	obj := k.New()
	if err := json.Unmarshal(b, obj); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", k.Kind, err)
	}
	k.SetTypeMeta(obj)
	return obj, nil
}

// decodeResponse reads an object answer in whichever encoding the server
// chose (protobuf when it honoured our Accept, JSON otherwise).
func decodeResponse(k *api.Kind, resp *Response) (api.Object, error) {
	if api.IsProtobuf(resp.Header.Get("Content-Type")) {
		return api.DecodeProto(k, resp.Body)
	}
	return decodeObject(k, resp.Body)
}

// objectRequest is a call whose answer is an object (or list) of kind k:
// Go clients speak Kubernetes' protobuf with the servers.
func objectRequest(method, path string, q url.Values) Request {
	return Request{Method: method, Path: path, Query: q, Accept: api.ProtobufContentType + ", application/json"}
}

// Get reads one object (linearizably unless stale).
func (c *Client) Get(ctx context.Context, k *api.Kind, namespace, name string, stale bool) (api.Object, error) {
	q := url.Values{}
	if stale {
		q.Set("stale", "true")
	}
	resp, err := c.Do(ctx, objectRequest(http.MethodGet, k.ObjectPath(namespace, name), q))
	if err != nil {
		return nil, err
	}
	return decodeResponse(k, resp)
}

// List reads a page of objects of kind k in namespace ("" for all).
func (c *Client) List(ctx context.Context, k *api.Kind, namespace string, opts ListOptions) (*List, error) {
	resp, err := c.Do(ctx, objectRequest(http.MethodGet, k.Path(namespace), opts.query()))
	if err != nil {
		return nil, err
	}
	if api.IsProtobuf(resp.Header.Get("Content-Type")) {
		meta, items, err := api.DecodeProtoList(k, resp.Body)
		if err != nil {
			return nil, err
		}
		return &List{ResourceVersion: meta.ResourceVersion, Continue: meta.Continue, Items: items}, nil
	}
	var raw struct {
		Metadata metav1.ListMeta   `json:"metadata"`
		Items    []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(resp.Body, &raw); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", k.ListKind(), err)
	}
	out := &List{ResourceVersion: raw.Metadata.ResourceVersion, Continue: raw.Metadata.Continue, Items: make([]api.Object, 0, len(raw.Items))}
	for _, item := range raw.Items {
		obj, err := decodeObject(k, item)
		if err != nil {
			return nil, err
		}
		out.Items = append(out.Items, obj)
	}
	return out, nil
}

// ListAll reads every page.
func (c *Client) ListAll(ctx context.Context, k *api.Kind, namespace string, opts ListOptions) (*List, error) {
	all := &List{}
	for {
		page, err := c.List(ctx, k, namespace, opts)
		if err != nil {
			return nil, err
		}
		all.Items = append(all.Items, page.Items...)
		if all.ResourceVersion == "" {
			all.ResourceVersion = page.ResourceVersion
		}
		if page.Continue == "" {
			return all, nil
		}
		opts.Continue = page.Continue
	}
}

func (c *Client) write(ctx context.Context, method, path string, obj any, query url.Values) (*Response, error) {
	body, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return c.Do(ctx, Request{Method: method, Path: path, Body: body, Query: query})
}

// writeObject sends obj of kind k in protobuf and reads the answer.
func (c *Client) writeObject(ctx context.Context, method, path string, k *api.Kind, obj api.Object) (api.Object, error) {
	body, err := api.EncodeProto(k, obj)
	if err != nil {
		return nil, err
	}
	req := objectRequest(method, path, nil)
	req.Body, req.ContentType = body, api.ProtobufContentType
	resp, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	return decodeResponse(k, resp)
}

// Create creates obj (its kind comes from its apiVersion/kind).
func (c *Client) Create(ctx context.Context, obj api.Object) (api.Object, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	return c.writeObject(ctx, http.MethodPost, k.Path(namespaceOf(k, obj)), k, obj)
}

func namespaceOf(k *api.Kind, obj api.Object) string {
	if k.Namespaced && obj.GetNamespace() == "" {
		return "default"
	}
	return obj.GetNamespace()
}

// Update replaces obj; a resourceVersion in obj makes it conditional.
func (c *Client) Update(ctx context.Context, obj api.Object) (api.Object, error) {
	return c.update(ctx, obj, "")
}

// UpdateStatus replaces obj's status.
func (c *Client) UpdateStatus(ctx context.Context, obj api.Object) (api.Object, error) {
	return c.update(ctx, obj, "/status")
}

func (c *Client) update(ctx context.Context, obj api.Object, sub string) (api.Object, error) {
	k, err := kindOf(obj)
	if err != nil {
		return nil, err
	}
	return c.writeObject(ctx, http.MethodPut, k.ObjectPath(namespaceOf(k, obj), obj.GetName())+sub, k, obj)
}

// Patch content types.
const (
	MergePatch = "application/merge-patch+json"
	JSONPatch  = "application/json-patch+json"
)

// Patch applies a merge or JSON patch; subresource is "" or "status".
func (c *Client) Patch(ctx context.Context, k *api.Kind, namespace, name, patchType string, patch []byte, subresource string) (api.Object, error) {
	path := k.ObjectPath(namespace, name)
	if subresource != "" {
		path += "/" + subresource
	}
	req := objectRequest(http.MethodPatch, path, nil)
	req.Body, req.ContentType = patch, patchType
	resp, err := c.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	return decodeResponse(k, resp)
}

// DeleteOptions tune a delete.
type DeleteOptions struct {
	// Propagation is "", "Background", "Foreground" or "Orphan".
	Propagation string
	// Preconditions; empty means none.
	UID, ResourceVersion string
	// Grace is a pod's termination grace period in seconds (nil: the
	// pod's own; 0: at once, what a node sends once the pod has stopped).
	Grace *int64
}

// Delete deletes an object.
func (c *Client) Delete(ctx context.Context, k *api.Kind, namespace, name string, opts DeleteOptions) error {
	_, err := c.write(ctx, http.MethodDelete, k.ObjectPath(namespace, name), deleteBody(opts), nil)
	return err
}

// DeleteCollection deletes every object matching opts' selectors.
func (c *Client) DeleteCollection(ctx context.Context, k *api.Kind, namespace string, opts ListOptions, del DeleteOptions) error {
	_, err := c.write(ctx, http.MethodDelete, k.Path(namespace), deleteBody(del), opts.query())
	return err
}

func deleteBody(opts DeleteOptions) metav1.DeleteOptions {
	var d metav1.DeleteOptions
	d.Kind, d.APIVersion = "DeleteOptions", "v1"
	if opts.Propagation != "" {
		p := metav1.DeletionPropagation(opts.Propagation)
		d.PropagationPolicy = &p
	}
	d.GracePeriodSeconds = opts.Grace
	if opts.UID != "" || opts.ResourceVersion != "" {
		d.Preconditions = &metav1.Preconditions{}
		if opts.UID != "" {
			uid := types.UID(opts.UID)
			d.Preconditions.UID = &uid
		}
		if opts.ResourceVersion != "" {
			rv := opts.ResourceVersion
			d.Preconditions.ResourceVersion = &rv
		}
	}
	return d
}

// GetJSON reads a non-object endpoint (operator APIs) into v.
func (c *Client) GetJSON(ctx context.Context, path string, query url.Values, v any) error {
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, Path: path, Query: query})
	if err != nil {
		return err
	}
	return json.Unmarshal(resp.Body, v)
}
