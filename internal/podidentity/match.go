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
	"errors"
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

// Matches returns the identities bound to pod: those bound in the pod's own namespace first, then the others, each
// part ordered by binding namespace and name so every caller sees the same order. A binding grants its identity to pods in other namespaces, as upstream does, unless
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
		// The pod's own namespace first: a binding there is its team's, one elsewhere may be anyone's.
		if own := compareBool(b.Binding.Namespace == pod.Namespace, a.Binding.Namespace == pod.Namespace); own != 0 {
			return own
		}
		return strings.Compare(a.Binding.Namespace+"/"+a.Binding.Name, b.Binding.Namespace+"/"+b.Binding.Name)
	})
	return out
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
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

// ErrNoMatch says no identity bound to the pod fits the request.
var ErrNoMatch = errors.New("no identity bound to the pod fits the request")

// ErrAmbiguous says the request could be served only by identities bound in other namespaces, and by more than one
// of them.
var ErrAmbiguous = errors.New("identities bound in more than one other namespace fit the request")

// Select picks the match a request names by client ID or by resource ID (both compared case-insensitively, as Azure
// IDs are), or the first match when the request names none.
//
// Without forceNamespaced anyone who may create an AzureIdentityBinding in their own namespace can give it another
// team's selector, so the order of matches must never let such a binding decide what a pod gets. A fitting match
// bound in the pod's own namespace therefore always wins. Only when there is none does a binding of another namespace
// serve the pod (upstream's cross-namespace use: identities kept in a central namespace), and then only if every
// fitting match comes from that one namespace: with two, one of them may be a stranger's, and picking by name would
// let whoever names their binding first win. ErrAmbiguous says so; the pod can name its identity by client ID, or the
// identity can be bound in its namespace.
func Select(pod *corev1.Pod, matches []Match, clientID, resourceID string) (Match, error) {
	var fitting []Match
	for _, m := range matches {
		if fits(m, clientID, resourceID) {
			fitting = append(fitting, m)
		}
	}
	if len(fitting) == 0 {
		return Match{}, ErrNoMatch
	}
	for _, m := range fitting {
		if m.Binding.Namespace == pod.Namespace {
			return m, nil
		}
	}
	for _, m := range fitting[1:] {
		if m.Binding.Namespace != fitting[0].Binding.Namespace {
			return Match{}, ErrAmbiguous
		}
	}
	return fitting[0], nil
}

func fits(m Match, clientID, resourceID string) bool {
	switch {
	case clientID != "":
		return strings.EqualFold(m.Identity.Spec.ClientID, clientID)
	case resourceID != "":
		return strings.EqualFold(m.Identity.Spec.ResourceID, resourceID)
	}
	return true
}
