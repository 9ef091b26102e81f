/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package nmi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// micNamespace is the suite agent's --MICNamespace (agentOptions).
const micNamespace = "upstream-mic"

// kubeletIdentity is the node's own identity, which upstream's MIC asks IMDS for (useManagedIdentityExtension).
const kubeletIdentity = "00000000-0000-0000-0000-0000000000e1"

// ensureNamespace creates namespace name (and its default service account) unless it exists.
func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	err := k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	err = k8s.Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: name, Name: "default"}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// replicaSet creates a ReplicaSet as a Deployment of the same name prefix would, and returns the owner reference its
// pods carry.
func replicaSet(t *testing.T, ns, name string) metav1.OwnerReference {
	t.Helper()
	labels := map[string]string{"app": name}
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.ReplicaSetSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "c"}}}}}}
	create(t, rs)
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}

// ownedPod creates a running pod on the agent's node with the given owner references and no aadpodidbinding label.
func ownedPod(t *testing.T, ns, name, ip string, owners ...metav1.OwnerReference) {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, OwnerReferences: owners},
		Spec: corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "c", Image: "c"}}}}
	create(t, pod)
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
	if err := k8s.Status().Update(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	waitForCache(t, pod)
}

func micTokenPath() string {
	return tokenPath("https://management.azure.com/", "client_id="+kubeletIdentity)
}

// Upstream's MIC (its manifests' Deployment "mic", so pods of a ReplicaSet mic-*) in the agent's --MICNamespace keeps
// reaching the node's IMDS through the agent during a migration, without a binding, as upstream's NMI let it: the
// token is the node identity's, from IMDS, with no Entra ID call.
func TestUpstreamMICInMICNamespaceReachesTheNodesIMDS(t *testing.T) {
	cloud.AddIdentity(azurefake.Identity{ClientID: kubeletIdentity, TenantID: tenantID, AssignedToVM: true})
	ensureNamespace(t, micNamespace)
	ownedPod(t, micNamespace, "mic-7d4f9c-abcde", "10.250.50.1", replicaSet(t, micNamespace, "mic-7d4f9c"))

	before, beforeEntra := cloud.Count(azurefake.IMDSToken), cloud.Count(azurefake.EntraToken)
	tok := decodeToken(t, get(t, "10.250.50.1:1", micTokenPath(), nil))
	if c := claims(t, tok.AccessToken); c["appid"] != kubeletIdentity && c["azp"] != kubeletIdentity {
		t.Errorf("MIC's token is not the node identity's: %v", c)
	}
	if imds, entra := cloud.Count(azurefake.IMDSToken)-before, cloud.Count(azurefake.EntraToken)-beforeEntra; imds != 1 || entra != 0 {
		t.Errorf("IMDS calls %d, Entra calls %d: want 1 and 0", imds, entra)
	}
}

// Attack: the exemption is for the named namespace's pods of a ReplicaSet mic-*, nothing else. A tenant who names its
// ReplicaSet mic-* in its own namespace (or in one whose name extends the MIC namespace's), or a pod of the MIC
// namespace that only claims such an owner without being controlled by it, gets no node token and causes no IMDS call.
func TestMICNamespaceExemptionIsNotATenants(t *testing.T) {
	cloud.AddIdentity(azurefake.Identity{ClientID: kubeletIdentity, TenantID: tenantID, AssignedToVM: true})
	ensureNamespace(t, micNamespace)
	tenant := newNamespace(t)
	lookalike := micNamespace + "-x"
	ensureNamespace(t, lookalike)

	ownedPod(t, tenant, "tenant-mic", "10.250.51.1", replicaSet(t, tenant, "mic-7d4f9c"))
	ownedPod(t, lookalike, "lookalike-mic", "10.250.51.2", replicaSet(t, lookalike, "mic-7d4f9c"))
	app := replicaSet(t, micNamespace, "app-5c6d7")
	ownedPod(t, micNamespace, "app", "10.250.51.3", app)
	notController := replicaSet(t, micNamespace, "mic-claimed")
	notController.Controller = ptr.To(false)
	ownedPod(t, micNamespace, "claims-mic", "10.250.51.4", app, notController)
	ownedPod(t, micNamespace, "foreign-kind", "10.250.51.5", metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "ReplicaSet",
		Name: "mic-foreign", UID: "00000000-0000-0000-0000-00000000abcd", Controller: ptr.To(true)})
	ownedPod(t, micNamespace, "no-owner", "10.250.51.6")

	for _, tc := range []struct{ who, ip string }{
		{"a tenant's ReplicaSet mic-*", "10.250.51.1"},
		{"a namespace whose name extends the MIC namespace's", "10.250.51.2"},
		{"another ReplicaSet of the MIC namespace", "10.250.51.3"},
		{"a non-controller owner reference to a ReplicaSet mic-*", "10.250.51.4"},
		{"a controller named mic-* of another API group", "10.250.51.5"},
		{"a pod of the MIC namespace without owner", "10.250.51.6"},
	} {
		before := cloud.Count(azurefake.IMDSToken)
		r := get(t, tc.ip+":1", micTokenPath(), nil)
		if r.status == http.StatusOK {
			t.Errorf("%s: 200, a node token (not shown), want 404", tc.who)
		} else if r.status != http.StatusNotFound {
			t.Errorf("%s: %d %s, want 404", tc.who, r.status, r.body)
		}
		if n := cloud.Count(azurefake.IMDSToken) - before; n != 0 {
			t.Errorf("%s: %d IMDS token calls, want none", tc.who, n)
		}
	}
	// The refusal of a MIC-shaped pod outside the MIC namespace names the flag that would let it through.
	r := get(t, "10.250.51.1:1", micTokenPath(), nil)
	if want := "--MICNamespace=" + tenant; !strings.Contains(string(r.body), want) {
		t.Errorf("refusal of a MIC-shaped pod does not name %s: %s", want, r.body)
	}
}
