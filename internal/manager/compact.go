/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package manager

import (
	"encoding/binary"
	"maps"
	"slices"
	"sync"
	"unique"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// compactObjects is the caches' transform. It drops managedFields, which nothing reads, and makes the strings that
// thousands of cached objects repeat share one copy: namespaces, label and annotation keys and the values bindings
// share (a token's audience, inputs and times are the same for every binding of a credential), owners' kinds, the
// bindings' registries, scopes, identities and service accounts, and their conditions' types, reasons and messages.
// Every decoded object otherwise holds its own copy of each; at 100,000 bindings the copies were a quarter of the
// live heap. Label and annotation maps with the same contents are shared too (sharedMaps). Values are unchanged,
// only where they are stored.
func compactObjects() toolscache.TransformFunc {
	strip := cache.TransformStripManagedFields()
	labelMaps := &sharedMaps{byContents: map[string]map[string]string{}}
	return func(in any) (any, error) {
		out, err := strip(in)
		if err != nil {
			return out, err
		}
		switch o := out.(type) {
		case *acrv1beta2.AcrPullBinding:
			compactBindingV1beta2(o)
		case *acrv1beta1.AcrPullBinding:
			compactBindingV1beta1(o)
		}
		if m, err := meta.Accessor(out); err == nil {
			compactMeta(m, labelMaps)
		}
		return out, nil
	}
}

// shared returns s stored once for the whole process.
func shared(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

func compactMeta(m metav1.Object, labelMaps *sharedMaps) {
	m.SetNamespace(shared(m.GetNamespace()))
	m.SetLabels(labelMaps.share(m.GetLabels()))
	m.SetAnnotations(labelMaps.share(m.GetAnnotations()))
	owners := m.GetOwnerReferences()
	for i := range owners {
		owners[i].APIVersion, owners[i].Kind = shared(owners[i].APIVersion), shared(owners[i].Kind)
	}
	finalizers := m.GetFinalizers()
	for i := range finalizers {
		finalizers[i] = shared(finalizers[i])
	}
}

// sharedMaps lets cached objects whose label or annotation maps hold the same entries share one map. A small Go map
// costs about 300 bytes however short its strings, and the pull secrets' annotations (expiry, refresh time, inputs,
// audience) are the same for every binding of a credential: at 100,000 bindings the maps were the largest item of
// the heap after the decoded objects themselves. Sharing is safe because cached objects are read-only: the cache
// hands out deep copies, and the few reads without one do not write.
//
// The table remembers at most sharedMapsKept maps and forgets them all when full, so maps no object uses any more
// are not kept alive for long; a map seen again after that is shared from its next occurrence on.
type sharedMaps struct {
	mu         sync.Mutex
	byContents map[string]map[string]string
}

// sharedMapsKept bounds the table, and sharedMapLargest what it keeps of one map (its key): maps larger than that
// (kubectl's last-applied-configuration, say) are rarely the same twice, and the table stays below about 5 MB.
const (
	sharedMapsKept   = 4096
	sharedMapLargest = 1024
)

// share returns a map with in's entries, shared with every other object that had the same entries.
func (t *sharedMaps) share(in map[string]string) map[string]string {
	if len(in) == 0 {
		return in
	}
	contents := contentsKey(in)
	if len(contents) > sharedMapLargest {
		return copyShared(in)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if m, ok := t.byContents[contents]; ok {
		return m
	}
	if len(t.byContents) >= sharedMapsKept {
		clear(t.byContents)
	}
	out := copyShared(in)
	t.byContents[contents] = out
	return out
}

// copyShared copies a map with its keys and values stored once for the process.
func copyShared(in map[string]string) map[string]string {
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[shared(k)] = shared(v)
	}
	return out
}

// contentsKey encodes a map's entries in key order, each string preceded by its length, so two maps have the same
// key exactly when they hold the same entries: no choice of keys and values (annotation values may hold any byte)
// makes one object's map stand in for another's.
func contentsKey(m map[string]string) string {
	var out []byte
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = binary.AppendUvarint(out, uint64(len(k)))
		out = append(out, k...)
		out = binary.AppendUvarint(out, uint64(len(m[k])))
		out = append(out, m[k]...)
	}
	return string(out)
}

func compactConditions(conditions []metav1.Condition) {
	for i := range conditions {
		c := &conditions[i]
		c.Type, c.Status, c.Reason, c.Message = shared(c.Type), metav1.ConditionStatus(shared(string(c.Status))), shared(c.Reason), shared(c.Message)
	}
}

func compactBindingV1beta2(b *acrv1beta2.AcrPullBinding) {
	s := &b.Spec
	s.ACR.Server, s.ACR.Scope = shared(s.ACR.Server), shared(s.ACR.Scope)
	s.ACR.Environment = acrv1beta2.AzureEnvironmentType(shared(string(s.ACR.Environment)))
	s.ServiceAccountName = shared(s.ServiceAccountName)
	if mi := s.Auth.ManagedIdentity; mi != nil {
		mi.ClientID, mi.ResourceID = shared(mi.ClientID), shared(mi.ResourceID)
	}
	if wi := s.Auth.WorkloadIdentity; wi != nil {
		wi.ServiceAccountName, wi.ClientID, wi.TenantID = shared(wi.ServiceAccountName), shared(wi.ClientID), shared(wi.TenantID)
	}
	b.Status.Error, b.Status.TokenAudience = shared(b.Status.Error), shared(b.Status.TokenAudience)
	compactConditions(b.Status.Conditions)
}

func compactBindingV1beta1(b *acrv1beta1.AcrPullBinding) {
	s := &b.Spec
	s.AcrServer, s.Scope, s.ServiceAccountName = shared(s.AcrServer), shared(s.Scope), shared(s.ServiceAccountName)
	s.ManagedIdentityClientID, s.ManagedIdentityResourceID = shared(s.ManagedIdentityClientID), shared(s.ManagedIdentityResourceID)
	b.Status.Error, b.Status.TokenAudience = shared(b.Status.Error), shared(b.Status.TokenAudience)
	compactConditions(b.Status.Conditions)
}
