/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package podidentity

import (
	"errors"
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
		{"pod in b gets all three, its own namespace's first", pod("b", "web", nil), false, []string{"b/x->id-b-ns", "b/z->id-b", "a/y->id-a"}},
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
	p := pod("a", "web", nil)
	ms := Matches(p, bs, ids, false)
	if m, err := Select(p, ms, "", ""); err != nil || m.Identity.Name != "one" {
		t.Errorf("no id asked: want the first, got %v %v", m.Identity, err)
	}
	if m, err := Select(p, ms, "C-2", ""); err != nil || m.Identity.Name != "two" {
		t.Errorf("client ID match is case-insensitive: got %v %v", m.Identity, err)
	}
	if m, err := Select(p, ms, "", ids[1].Spec.ResourceID); err != nil || m.Identity.Name != "two" {
		t.Errorf("resource ID match: got %v %v", m.Identity, err)
	}
	if _, err := Select(p, ms, "c-3", ""); !errors.Is(err, ErrNoMatch) {
		t.Errorf("an identity the pod is not bound to must not be selected: %v", err)
	}
}

// A tenant with rights in their own namespace only ("aaa", sorting first) binds their identity to the selector of
// a team in "victim". Whatever the request names, the victim's pod never gets the tenant's identity while its own
// namespace binds one that fits; where the pod relies on a central namespace, a second namespace makes the match
// ambiguous instead of letting the name order decide.
func TestSelectNeverLetsAForeignBindingWin(t *testing.T) {
	const selector = "web"
	ids := []aadv1.AzureIdentity{
		identity("victim", "own", "c-own", false),
		identity("aaa", "attacker", "c-attacker", false),
		identity("aaa", "posing", "c-own", false), // the tenant's identity claiming the victim's client ID
		identity("central", "shared", "c-shared", false),
	}
	for _, tc := range []struct {
		name               string
		bindings           []aadv1.AzureIdentityBinding
		clientID           string
		want               string
		wantErr            error
		forceNamespacedErr error
	}{
		{"own binding beats the tenant's when nothing is named",
			[]aadv1.AzureIdentityBinding{binding("victim", "zzz", "own", selector), binding("aaa", "aaa", "attacker", selector)},
			"", "own", nil, nil},
		{"own binding beats a tenant's identity posing with the same client ID",
			[]aadv1.AzureIdentityBinding{binding("victim", "zzz", "own", selector), binding("aaa", "aaa", "posing", selector)},
			"c-own", "own", nil, nil},
		{"a central namespace alone serves the pod",
			[]aadv1.AzureIdentityBinding{binding("central", "b", "shared", selector)},
			"", "shared", nil, ErrNoMatch},
		{"a tenant joining the central namespace makes it ambiguous",
			[]aadv1.AzureIdentityBinding{binding("central", "b", "shared", selector), binding("aaa", "aaa", "attacker", selector)},
			"", "", ErrAmbiguous, ErrNoMatch},
		{"naming the central identity still works beside the tenant's",
			[]aadv1.AzureIdentityBinding{binding("central", "b", "shared", selector), binding("aaa", "aaa", "attacker", selector)},
			"c-shared", "shared", nil, ErrNoMatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("victim", selector, nil)
			m, err := Select(p, Matches(p, tc.bindings, ids, false), tc.clientID, "")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
			if err == nil && m.Identity.Name != tc.want {
				t.Fatalf("got %s/%s, want %s", m.Identity.Namespace, m.Identity.Name, tc.want)
			}
			if _, err := Select(p, Matches(p, tc.bindings, ids, true), tc.clientID, ""); !errors.Is(err, tc.forceNamespacedErr) {
				t.Fatalf("forceNamespaced: error %v, want %v", err, tc.forceNamespacedErr)
			}
		})
	}
}
