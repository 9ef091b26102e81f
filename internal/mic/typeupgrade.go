/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

// The ConfigMap in the controller's namespace that records the v1.6 type upgrade, as upstream MIC named it: a key
// present means the upgrade ran (by upstream or by acrpull), and it is not run again.
const (
	TypeUpgradeConfigMap = "aad-pod-identity-config"
	TypeUpgradeStatusKey = "type-upgrade-status"
)

// upgradeKinds are the kinds the upgrade rewrites, with the Go types whose JSON names are the canonical ones.
var upgradeKinds = []struct {
	kind string
	typ  reflect.Type
}{
	{"AzureIdentity", reflect.TypeFor[aadv1.AzureIdentity]()},
	{"AzureIdentityBinding", reflect.TypeFor[aadv1.AzureIdentityBinding]()},
	{"AzureAssignedIdentity", reflect.TypeFor[aadv1.AzureAssignedIdentity]()},
	{"AzurePodIdentityException", reflect.TypeFor[aadv1.AzurePodIdentityException]()},
}

// TypeUpgradeResult says what UpgradeTypes did.
type TypeUpgradeResult struct {
	// Skipped: the ConfigMap already recorded an upgrade.
	Skipped bool
	// Rewritten counts the objects written back with canonical field names.
	Rewritten int
}

// UpgradeTypes is upstream MIC's start-up migration of objects written before aad-pod-identity v1.6, whose field
// names were Go's (ResourceID, ClientID, Selector, AzureIdentity, ...) rather than the API's camelCase ones, which
// clients from client-go 0.17 on no longer read. Unless ConfigMap aad-pod-identity-config in namespace has the key
// type-upgrade-status, it lists every object of the four kinds as unstructured, renames legacy keys (see
// UpgradeLegacyFields), writes back the objects that changed, and records version under the key.
//
// Upstream also re-embedded the upgraded identities and bindings into the AzureAssignedIdentities; here the records'
// embedded copies are renamed in the same pass, and a record whose identity or binding was rewritten no longer
// matches its resource version, so the next assignment cycle updates it from the live objects anyway.
//
// The CRDs acrpull installs are structural without x-kubernetes-preserve-unknown-fields, so the apiserver prunes
// unknown fields, on write and on read from etcd alike: through them a legacy-cased field is never seen, and the
// upgrade finds nothing to rewrite. It still runs, and records itself, for clusters whose CRDs are upstream's older
// ones, and so that the ConfigMap says the same thing it said under upstream.
//
// reader reads (use an uncached one: the controller may not list ConfigMaps cluster-wide); c writes. An object
// changed since the list makes the write fail with a conflict; the key is then not recorded, and the next start
// tries again.
func UpgradeTypes(ctx context.Context, reader client.Reader, c client.Client, namespace, version string) (TypeUpgradeResult, error) {
	var res TypeUpgradeResult
	cm := &corev1.ConfigMap{}
	err := reader.Get(ctx, client.ObjectKey{Namespace: namespace, Name: TypeUpgradeConfigMap}, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = nil
	case err != nil:
		return res, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, TypeUpgradeConfigMap, err)
	case cm.Data[TypeUpgradeStatusKey] != "":
		res.Skipped = true
		return res, nil
	}

	for _, k := range upgradeKinds {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(aadv1.GroupVersion.WithKind(k.kind + "List"))
		if err := reader.List(ctx, list); err != nil {
			return res, fmt.Errorf("listing %s: %w", k.kind, err)
		}
		for i := range list.Items {
			obj := &list.Items[i]
			if !UpgradeLegacyFields(k.typ, obj.Object) {
				continue
			}
			obj.SetGroupVersionKind(aadv1.GroupVersion.WithKind(k.kind))
			if err := c.Update(ctx, obj); err != nil {
				return res, fmt.Errorf("writing back %s %s/%s: %w", k.kind, obj.GetNamespace(), obj.GetName(), err)
			}
			res.Rewritten++
		}
	}

	if cm == nil {
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: TypeUpgradeConfigMap},
			Data: map[string]string{TypeUpgradeStatusKey: version}}
		if err := c.Create(ctx, cm); err != nil {
			return res, fmt.Errorf("recording the type upgrade in ConfigMap %s/%s: %w", namespace, TypeUpgradeConfigMap, err)
		}
		return res, nil
	}
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[TypeUpgradeStatusKey] = version
	if err := c.Update(ctx, cm); err != nil {
		return res, fmt.Errorf("recording the type upgrade in ConfigMap %s/%s: %w", namespace, TypeUpgradeConfigMap, err)
	}
	return res, nil
}

// UpgradeLegacyFields renames, in place, every key of obj (an object of Go type t, as unstructured content) that
// matches one of t's JSON field names only case-insensitively, as encoding/json matched them when upstream decoded
// old objects. It returns whether anything changed. Where both spellings are present the canonical one is kept: it
// was written by a newer client.
//
// Metadata and maps with data keys (labels, podLabels) are left alone, and unknown keys are kept as they are, so
// nothing the upgrade does not understand is lost.
func UpgradeLegacyFields(t reflect.Type, obj map[string]any) bool {
	return canonicalize(t, obj)
}

var (
	objectMetaType  = reflect.TypeFor[metav1.ObjectMeta]()
	unmarshalerType = reflect.TypeFor[json.Unmarshaler]()
)

// jsonField is one JSON member of a struct type.
type jsonField struct {
	name string
	typ  reflect.Type
}

// jsonFields lists a struct's JSON members, with inlined (embedded, or ",inline") structs flattened.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" && opts == "" {
			continue
		}
		if (f.Anonymous && name == "") || strings.Contains(","+opts+",", ",inline,") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				out = append(out, jsonFields(ft)...)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, typ: f.Type})
	}
	return out
}

func canonicalize(t reflect.Type, v any) bool {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	// Types that decode themselves (times, quantities) and metadata are not the legacy objects' own fields.
	if t == objectMetaType || reflect.PointerTo(t).Implements(unmarshalerType) {
		return false
	}
	changed := false
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for _, f := range jsonFields(t) {
			for key, val := range m {
				if key == f.name || !strings.EqualFold(key, f.name) {
					continue
				}
				if _, has := m[f.name]; !has {
					m[f.name] = val
				}
				delete(m, key)
				changed = true
			}
			if val, ok := m[f.name]; ok && canonicalize(f.typ, val) {
				changed = true
			}
		}
	case reflect.Slice, reflect.Array:
		items, ok := v.([]any)
		if !ok {
			return false
		}
		for _, item := range items {
			if canonicalize(t.Elem(), item) {
				changed = true
			}
		}
	}
	return changed
}
