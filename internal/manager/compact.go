/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package manager

import (
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
// live heap. Values are unchanged, only where they are stored.
func compactObjects() toolscache.TransformFunc {
	strip := cache.TransformStripManagedFields()
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
			compactMeta(m)
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

func compactMeta(m metav1.Object) {
	m.SetNamespace(shared(m.GetNamespace()))
	m.SetLabels(sharedMap(m.GetLabels()))
	m.SetAnnotations(sharedMap(m.GetAnnotations()))
	owners := m.GetOwnerReferences()
	for i := range owners {
		owners[i].APIVersion, owners[i].Kind = shared(owners[i].APIVersion), shared(owners[i].Kind)
	}
	finalizers := m.GetFinalizers()
	for i := range finalizers {
		finalizers[i] = shared(finalizers[i])
	}
}

// sharedMap copies a label or annotation map with its keys and values shared.
func sharedMap(in map[string]string) map[string]string {
	if len(in) == 0 {
		return in
	}
	out := make(map[string]string, len(in))
	for k, v := range in {
		out[shared(k)] = shared(v)
	}
	return out
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
