package api

import (
	"strings"
	"testing"
)

func TestEmptyObjectsAreNotUnsupportedFields(t *testing.T) {
	objs, err := DecodeManifests(strings.NewReader(`apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  securityContext: {}
  containers:
  - name: c
    image: x
    resources: {}
    securityContext: {}
`))
	if err != nil {
		t.Fatal(err)
	}
	Default(Pod, objs[0])
	if errs := ValidateSupportedFields(Pod, objs[0]); len(errs) > 0 {
		t.Fatal(errs)
	}
	objs, _ = DecodeManifests(strings.NewReader("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  securityContext: {runAsUser: 1}\n  containers: [{name: c, image: x}]\n"))
	if errs := ValidateSupportedFields(Pod, objs[0]); len(errs) != 1 || errs[0].Field != "spec.securityContext" {
		t.Fatal(errs)
	}
}
