package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/urfave/cli/v2"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/jsonmergepatch"
	"k8s.io/apimachinery/pkg/util/mergepatch"
	sigsjson "sigs.k8s.io/json"

	"orch.dev/orch/api"
	"orch.dev/orch/api/client"
)

// lastAppliedAnnotation holds the configuration apply last wrote, the
// "original" of its three-way merge (the same key kubectl uses, so objects
// move between the two tools).
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

func fileFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "filename", Aliases: []string{"f"}, Usage: "`FILE`, directory (its *.yaml, *.yml, *.json) or - for stdin; repeatable"},
		&cli.BoolFlag{Name: "recursive", Aliases: []string{"R"}, Usage: "also read the subdirectories of -f directories"},
	}
}

func applyCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "apply",
		Usage:     "create or update objects from manifests (three-way merge, like kubectl apply)",
		ArgsUsage: "-f FILE|DIR|-",
		Flags:     fileFlags(),
		Action: func(c *cli.Context) error {
			return e.forEachManifest(c, true, func(ctx context.Context, cl *client.Client, m manifest, ns string) (string, error) {
				return applyOne(ctx, cl, m, ns, e.stderr)
			})
		},
	}
}

func createCommand(e *env) *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create objects from manifests (an existing object is an error)",
		ArgsUsage: "-f FILE|DIR|-",
		Flags: append(fileFlags(), &cli.BoolFlag{Name: "save-config",
			Usage: "record the manifest in the last-applied annotation, so that apply can manage the object later"}),
		Action: func(c *cli.Context) error {
			save := c.Bool("save-config")
			return e.forEachManifest(c, false, func(ctx context.Context, cl *client.Client, m manifest, ns string) (string, error) {
				obj := m.obj.DeepCopyObject().(api.Object)
				obj.SetNamespace(ns)
				if save && obj.GetName() != "" {
					modified, err := modifiedConfiguration(m.raw, m.kind, ns)
					if err != nil {
						return "", fmt.Errorf("%s: %w", m.source, err)
					}
					setAnnotation(obj, lastAppliedAnnotation, lastAppliedValue(modified))
				}
				if _, err := cl.Create(ctx, obj); err != nil {
					return "", &opError{fmt.Sprintf("error when creating %q", m.source), err}
				}
				return "created", nil
			})
		},
	}
}

// forEachManifest reads and checks every manifest, then runs fn on each in
// order, printing "kind/name <outcome>". A failed object does not stop the
// others; the errors are listed at the end and the exit code is 1.
func (e *env) forEachManifest(c *cli.Context, apply bool,
	fn func(ctx context.Context, cl *client.Client, m manifest, ns string) (string, error)) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: manifests are given with -f", c.Args().First())
	}
	ms, err := readManifests(e, c.StringSlice("filename"), c.Bool("recursive"))
	if err != nil {
		return err
	}
	nsFlag, explicit := namespaceFlag(c), c.IsSet("namespace")
	namespaces := make([]string, len(ms))
	for i, m := range ms {
		if namespaces[i], err = preflight(m, nsFlag, explicit, apply); err != nil {
			return fmt.Errorf("%s: %w", m.source, err)
		}
	}
	cl, err := e.client(c)
	if err != nil {
		return err
	}
	var errs []error
	for i, m := range ms {
		outcome, err := fn(e.ctx, cl, m, namespaces[i])
		if err != nil {
			errs = append(errs, err)
			if e.ctx.Err() != nil {
				break
			}
			continue
		}
		fmt.Fprintf(e.stdout, "%s %s\n", objectRef(m.kind, m.obj.GetName()), outcome)
	}
	for _, err := range errs {
		fmt.Fprintln(e.stderr, errorLine(err))
	}
	if len(errs) > 0 {
		return exitCode(1)
	}
	return nil
}

// preflight checks one manifest before anything is written and returns its
// namespace: the namespace must agree with an explicit -n, and the object
// must pass the same validation the server runs on create.
func preflight(m manifest, nsFlag string, nsExplicit, apply bool) (string, error) {
	own := m.obj.GetNamespace()
	if m.kind.Namespaced && nsExplicit && own != "" && own != nsFlag {
		return "", fmt.Errorf("the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation", own, nsFlag, own)
	}
	ns := objectNamespace(m.kind, own, nsFlag)
	if m.obj.GetName() == "" {
		if apply || m.obj.GetGenerateName() == "" {
			return "", fmt.Errorf("%s: metadata.name is required", m.kind.Kind)
		}
		return ns, nil
	}
	if err := validateLocally(m, ns); err != nil {
		return "", err
	}
	return ns, nil
}

// validateLocally runs api.Validate on the object as the server would see
// it on create (defaulted, status reset), so that semantically invalid input
// in a later document stops the whole apply before the first write.
func validateLocally(m manifest, ns string) error {
	k := m.kind
	obj := m.obj.DeepCopyObject().(api.Object)
	obj.SetNamespace(ns)
	if k.HasStatus && k != api.Node {
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			return err
		}
		delete(u, "status")
		fresh := k.New()
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, fresh); err != nil {
			return err
		}
		obj = fresh
	}
	api.Default(k, obj)
	if errs := api.Validate(k, obj, nil); len(errs) > 0 {
		return fmt.Errorf("%s %q is invalid: %s", k.Kind, obj.GetName(), errs.ToAggregate().Error())
	}
	return nil
}

// applyOne creates the object if it does not exist, else patches it with
// the three-way merge of the last applied configuration, the manifest and
// the live object.
func applyOne(ctx context.Context, cl *client.Client, m manifest, ns string, warn io.Writer) (string, error) {
	k, name := m.kind, m.obj.GetName()
	modified, err := modifiedConfiguration(m.raw, k, ns)
	if err != nil {
		return "", fmt.Errorf("%s: %w", m.source, err)
	}
	resp, err := cl.Do(ctx, client.Request{Method: http.MethodGet, Path: k.ObjectPath(ns, name)})
	if apierrors.IsNotFound(err) {
		obj := m.obj.DeepCopyObject().(api.Object)
		obj.SetNamespace(ns)
		setAnnotation(obj, lastAppliedAnnotation, lastAppliedValue(modified))
		if _, err := cl.Create(ctx, obj); err != nil {
			return "", &opError{fmt.Sprintf("error when creating %q", m.source), err}
		}
		return "created", nil
	}
	if err != nil {
		return "", &opError{fmt.Sprintf("error when retrieving current configuration of %s from %q", objectRef(k, name), m.source), err}
	}
	if !hasLastApplied(resp.Body) {
		fmt.Fprintf(warn, "Warning: %s %s is missing the %s annotation, which apply needs to know which fields it manages "+
			"(create objects with apply or create --save-config); the annotation will be added now.\n",
			groupResource(k), name, lastAppliedAnnotation)
	}
	patch, err := threeWayPatch(k, modified, resp.Body)
	if err != nil {
		return "", fmt.Errorf("%s: computing the patch for %s: %w", m.source, objectRef(k, name), err)
	}
	if same, err := patchIsNoop(k, resp.Body, patch); err != nil {
		return "", fmt.Errorf("%s: %s: %w", m.source, objectRef(k, name), err)
	} else if same {
		return "unchanged", nil
	}
	if _, err := cl.Patch(ctx, k, ns, name, client.MergePatch, patch, ""); err != nil {
		return "", &opError{fmt.Sprintf("error when patching %q", m.source), err}
	}
	return "configured", nil
}

// patchIsNoop reports whether patch leaves the live object as it is. A JSON
// merge patch replaces lists whole, so a manifest whose containers omit
// fields the server defaults (protocol: TCP, imagePullPolicy) yields a
// non-empty patch on every apply; like kubectl's strategic merge, apply
// must call that "unchanged". The patched object is defaulted as the server
// would and compared semantically with the live one.
func patchIsNoop(k *api.Kind, current, patch []byte) (bool, error) {
	if string(patch) == "{}" {
		return true, nil
	}
	patched, err := jsonpatch.MergePatch(current, patch)
	if err != nil {
		return false, fmt.Errorf("applying the patch locally: %w", err)
	}
	before, err := api.DecodeJSON(k, current)
	if err != nil {
		return false, nil // cannot tell: let the server decide
	}
	after, err := api.DecodeJSON(k, patched)
	if err != nil {
		return false, nil
	}
	api.Default(k, before)
	api.Default(k, after)
	return equality.Semantic.DeepEqual(before, after), nil
}

// modifiedConfiguration is the manifest as apply writes it: with its
// namespace filled in and the last-applied annotation holding the manifest
// itself (without that annotation), as kubectl does.
func modifiedConfiguration(raw []byte, k *api.Kind, ns string) ([]byte, error) {
	var obj map[string]any
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &obj); err != nil {
		return nil, err
	}
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	if k.Namespaced {
		meta["namespace"] = ns
	}
	annotations, _ := meta["annotations"].(map[string]any)
	if annotations == nil {
		annotations = map[string]any{}
	}
	delete(annotations, lastAppliedAnnotation)
	meta["annotations"] = annotations
	last, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	annotations[lastAppliedAnnotation] = string(last) + "\n"
	return json.Marshal(obj)
}

// lastAppliedValue extracts the annotation value from a modified
// configuration.
func lastAppliedValue(modified []byte) string {
	var obj struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	json.Unmarshal(modified, &obj)
	return obj.Metadata.Annotations[lastAppliedAnnotation]
}

func hasLastApplied(live []byte) bool {
	var obj struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	json.Unmarshal(live, &obj)
	_, ok := obj.Metadata.Annotations[lastAppliedAnnotation]
	return ok
}

func setAnnotation(obj api.Object, key, value string) {
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[key] = value
	obj.SetAnnotations(a)
}

// threeWayPatch computes apply's JSON merge patch from the live object
// (current) to the manifest (modified): fields the manifest sets are set,
// and fields the previous apply set but the manifest no longer has are
// removed; fields only the server or other clients set are kept. "{}"
// means nothing to change.
func threeWayPatch(k *api.Kind, modified, current []byte) ([]byte, error) {
	var live map[string]any
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(current, &live); err != nil {
		return nil, fmt.Errorf("decoding the live object: %w", err)
	}
	// The server may omit TypeMeta; it is the same object either way.
	live["apiVersion"], live["kind"] = k.APIVersion(), k.Kind
	var original []byte
	if meta, ok := live["metadata"].(map[string]any); ok {
		if a, ok := meta["annotations"].(map[string]any); ok {
			if s, ok := a[lastAppliedAnnotation].(string); ok {
				original = []byte(s)
			}
		}
	}
	cur, err := json.Marshal(live)
	if err != nil {
		return nil, err
	}
	return jsonmergepatch.CreateThreeWayJSONMergePatch(original, modified, cur,
		mergepatch.RequireKeyUnchanged("apiVersion"), mergepatch.RequireKeyUnchanged("kind"),
		mergepatch.RequireMetadataKeyUnchanged("name"))
}
