/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package podidentity

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

func pod(ns, label string, extra map[string]string) *corev1.Pod {
	labels := map[string]string{}
	if label != "" {
		labels[aadv1.PodLabel] = label
	}
	for k, v := range extra {
		labels[k] = v
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p", Labels: labels}}
}

func identity(ns, name, clientID string, namespaced bool) aadv1.AzureIdentity {
	id := aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: aadv1.AzureIdentitySpec{
		ClientID:   clientID,
		ResourceID: "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/" + name,
	}}
	if namespaced {
		id.Annotations = map[string]string{aadv1.BehaviorAnnotation: aadv1.BehaviorNamespaced}
	}
	return id
}

func binding(ns, name, identity, selector string) aadv1.AzureIdentityBinding {
	return aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: identity, Selector: selector}}
}

func names(ms []Match) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Binding.Namespace+"/"+m.Binding.Name+"->"+m.Identity.Name)
	}
	return out
}

func TestMatches(t *testing.T) {
	identities := []aadv1.AzureIdentity{
		identity("a", "id-a", "c-a", false),
		identity("b", "id-b", "c-b", false),
		identity("b", "id-b-ns", "c-bns", true),
	}
	bindings := []aadv1.AzureIdentityBinding{
		binding("b", "z", "id-b", "web"),
		binding("a", "y", "id-a", "web"),
		binding("b", "x", "id-b-ns", "web"),
		binding("a", "dangling", "missing", "web"),
		binding("a", "other", "id-a", "db"),
		binding("a", "empty", "id-a", ""),
	}
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod
		forced bool
		want   []string
	}{
		{"label in a; namespaced identity of b excluded", pod("a", "web", nil), false, []string{"a/y->id-a", "b/z->id-b"}},
		{"pod in b gets all three", pod("b", "web", nil), false, []string{"a/y->id-a", "b/x->id-b-ns", "b/z->id-b"}},
		{"forced namespaced", pod("a", "web", nil), true, []string{"a/y->id-a"}},
		{"no label", pod("a", "", nil), false, nil},
		{"selector is equality, not a label selector", pod("a", "we", nil), false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := names(Matches(tc.pod, bindings, identities, tc.forced))
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestExcepted(t *testing.T) {
	exceptions := []aadv1.AzurePodIdentityException{{
		ObjectMeta: metav1.ObjectMeta{Namespace: "a", Name: "e"},
		Spec:       aadv1.AzurePodIdentityExceptionSpec{PodLabels: map[string]string{"app": "MIC", "tier": "x"}},
	}}
	if !Excepted(pod("a", "", map[string]string{"app": "mic"}), exceptions) {
		t.Error("a pod with one matching label (case-insensitive value) should be excepted")
	}
	if Excepted(pod("b", "", map[string]string{"app": "mic"}), exceptions) {
		t.Error("an exception applies only in its own namespace")
	}
	if Excepted(pod("a", "", map[string]string{"app": "web"}), exceptions) {
		t.Error("a different value is no match")
	}
}

func TestSelect(t *testing.T) {
	ids := []aadv1.AzureIdentity{identity("a", "one", "c-1", false), identity("a", "two", "c-2", false)}
	bs := []aadv1.AzureIdentityBinding{binding("a", "b1", "one", "web"), binding("a", "b2", "two", "web")}
	ms := Matches(pod("a", "web", nil), bs, ids, false)
	if m, ok := Select(ms, "", ""); !ok || m.Identity.Name != "one" {
		t.Errorf("no id asked: want the first, got %v %v", m.Identity, ok)
	}
	if m, ok := Select(ms, "C-2", ""); !ok || m.Identity.Name != "two" {
		t.Errorf("client ID match is case-insensitive: got %v %v", m.Identity, ok)
	}
	if m, ok := Select(ms, "", ids[1].Spec.ResourceID); !ok || m.Identity.Name != "two" {
		t.Errorf("resource ID match: got %v %v", m.Identity, ok)
	}
	if _, ok := Select(ms, "c-3", ""); ok {
		t.Error("an identity the pod is not bound to must not be selected")
	}
}
