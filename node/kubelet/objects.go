package kubelet

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// objects resolves ConfigMaps and Secrets for one sync, each fetched once.
type objects struct {
	k    *Kubelet
	ctx  context.Context
	ns   string
	cms  map[string]*corev1.ConfigMap
	secs map[string]*corev1.Secret
}

func (k *Kubelet) newObjects(ctx context.Context, ns string) *objects {
	return &objects{k: k, ctx: ctx, ns: ns, cms: map[string]*corev1.ConfigMap{}, secs: map[string]*corev1.Secret{}}
}

// configMap returns the named ConfigMap, nil when it does not exist.
func (o *objects) configMap(name string) (*corev1.ConfigMap, error) {
	if cm, ok := o.cms[name]; ok {
		return cm, nil
	}
	cm, err := o.k.configMap(o.ctx, o.ns, name)
	if err != nil {
		return nil, err
	}
	o.cms[name] = cm
	return cm, nil
}

// secret returns the named Secret, nil when it does not exist.
func (o *objects) secret(name string) (*corev1.Secret, error) {
	if s, ok := o.secs[name]; ok {
		return s, nil
	}
	s, err := o.k.secret(o.ctx, o.ns, name)
	if err != nil {
		return nil, err
	}
	o.secs[name] = s
	return s, nil
}

// configMap reads a ConfigMap from the API, or from the copy kept for
// offline use; nil when it does not exist.
func (k *Kubelet) configMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	err := k.readObject(ctx, "configmap", ns, name, cm, func(ctx context.Context) (any, error) {
		return k.cfg.Cluster.GetConfigMap(ctx, ns, name)
	})
	if cm.Name == "" && err == nil {
		return nil, nil
	}
	return cm, err
}

// secret is configMap for Secrets.
func (k *Kubelet) secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := k.readObject(ctx, "secret", ns, name, s, func(ctx context.Context) (any, error) {
		return k.cfg.Cluster.GetSecret(ctx, ns, name)
	})
	if s.Name == "" && err == nil {
		return nil, nil
	}
	return s, err
}

// readObject fills into from the API (and keeps a copy) or, when the API
// cannot be reached, from the copy. It leaves into empty when the object
// does not exist.
func (k *Kubelet) readObject(ctx context.Context, kind, ns, name string, into any, get func(context.Context) (any, error)) error {
	var apiErr error
	if k.cfg.Cluster != nil && k.online.Load() {
		gctx, cancel := context.WithTimeout(ctx, k.cfg.APITimeout)
		obj, err := get(gctx)
		cancel()
		switch {
		case err == nil:
			if err := k.store.saveObject(kind, ns, name, obj); err != nil {
				k.log.Warn("keeping a copy for offline use", "kind", kind, "name", ns+"/"+name, "err", err)
			}
			switch v := into.(type) {
			case *corev1.ConfigMap:
				*v = *obj.(*corev1.ConfigMap)
			case *corev1.Secret:
				*v = *obj.(*corev1.Secret)
			}
			return nil
		case apierrors.IsNotFound(err):
			return nil
		}
		apiErr = err
	}
	if k.store.loadObject(kind, ns, name, into) {
		return nil
	}
	if apiErr == nil {
		apiErr = errors.New("the API server cannot be reached")
	}
	return fmt.Errorf("%s %q: no copy kept and %w", kind, name, apiErr)
}
