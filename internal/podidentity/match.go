/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package podidentity decides which Azure identities a pod may use under the AAD Pod Identity API: a pod labelled
// aadpodidbinding=<selector> is bound to every AzureIdentityBinding with that selector, and through it to the
// AzureIdentity the binding names in its own namespace. The node agent (NMI) and the assignment controller (MIC)
// both decide with these functions, so they never disagree about who may use what.
package podidentity

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

// Match is an identity a pod may use and the binding that grants it.
type Match struct {
	Binding  *aadv1.AzureIdentityBinding
	Identity *aadv1.AzureIdentity
}

// Matches returns the identities bound to pod, ordered by binding namespace and name so every caller sees the same
// first identity. A binding grants its identity to pods in other namespaces, as upstream does, unless
// forceNamespaced is set or the identity is annotated namespaced: then pod, binding and identity must share one
// namespace. A pod without the label, or with an empty one, matches nothing, even a binding with an empty selector.
func Matches(pod *corev1.Pod, bindings []aadv1.AzureIdentityBinding, identities []aadv1.AzureIdentity, forceNamespaced bool) []Match {
	selector := pod.Labels[aadv1.PodLabel]
	if selector == "" {
		return nil
	}
	byKey := make(map[string]*aadv1.AzureIdentity, len(identities))
	for i := range identities {
		byKey[identities[i].Namespace+"/"+identities[i].Name] = &identities[i]
	}
	var out []Match
	for i := range bindings {
		b := &bindings[i]
		if b.Spec.Selector != selector {
			continue
		}
		id := byKey[b.Namespace+"/"+b.Spec.AzureIdentity]
		if id == nil {
			continue
		}
		if (forceNamespaced || id.IsNamespaced()) && b.Namespace != pod.Namespace {
			continue
		}
		out = append(out, Match{Binding: b, Identity: id})
	}
	slices.SortFunc(out, func(a, b Match) int {
		return strings.Compare(a.Binding.Namespace+"/"+a.Binding.Name, b.Binding.Namespace+"/"+b.Binding.Name)
	})
	return out
}

// Excepted reports whether an AzurePodIdentityException in the pod's namespace covers the pod: any one of its
// labels with the pod's value for that key, compared case-insensitively.
func Excepted(pod *corev1.Pod, exceptions []aadv1.AzurePodIdentityException) bool {
	for _, ex := range exceptions {
		if ex.Namespace != pod.Namespace {
			continue
		}
		for k, v := range ex.Spec.PodLabels {
			if pv, ok := pod.Labels[k]; ok && strings.EqualFold(pv, v) {
				return true
			}
		}
	}
	return false
}

// Select picks the match a request names by client ID or by resource ID (both compared case-insensitively, as Azure
// IDs are), or the first match when the request names none. It reports false when nothing fits.
func Select(matches []Match, clientID, resourceID string) (Match, bool) {
	for _, m := range matches {
		switch {
		case clientID != "":
			if strings.EqualFold(m.Identity.Spec.ClientID, clientID) {
				return m, true
			}
		case resourceID != "":
			if strings.EqualFold(m.Identity.Spec.ResourceID, resourceID) {
				return m, true
			}
		default:
			return m, true
		}
	}
	return Match{}, false
}
