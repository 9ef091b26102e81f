/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"fmt"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
)

const mutatingPolicyAPI = "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"

// The finalizer policy is rendered only when asked for and where the cluster serves MutatingAdmissionPolicy.
func TestFinalizerPolicyRendersOnlyWhereTheAPIExists(t *testing.T) {
	g := NewWithT(t)
	g.Expect(ofKind(mustTemplate(t, "--api-versions", mutatingPolicyAPI), "MutatingAdmissionPolicy")).To(BeEmpty(), "off by default")
	g.Expect(ofKind(mustTemplate(t, "--set", "finalizerOnCreate=true"), "MutatingAdmissionPolicy")).To(BeEmpty(),
		"helm's default API versions have no MutatingAdmissionPolicy")
	objs := mustTemplate(t, "--api-versions", mutatingPolicyAPI, "--set", "finalizerOnCreate=true")
	g.Expect(ofKind(objs, "MutatingAdmissionPolicy")).To(HaveLen(1))
	g.Expect(ofKind(objs, "MutatingAdmissionPolicyBinding")).To(HaveLen(1))
}

// On a real apiserver, new bindings of both API groups carry the controller's finalizer from the start (so the
// controller writes nothing to add it), once, next to finalizers of others.
func TestFinalizerPolicyGivesNewBindingsTheControllersFinalizer(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns := fresh("finalizer-test"), fresh("finalizer-apps")
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"finalizer-test": ns}}})).To(Succeed())

	out, err := template(release, "--api-versions", mutatingPolicyAPI, "--set", "finalizerOnCreate=true", "--show-only", "templates/finalizer-policy.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	objs := mustDecode(t, out)
	g.Expect(objs).To(HaveLen(2))
	for _, obj := range objs {
		if obj.GetKind() == "MutatingAdmissionPolicyBinding" {
			// Only this test's namespace: the other tests on this apiserver create bindings no controller serves,
			// and a finalizer would keep them from being deleted.
			g.Expect(unstructured.SetNestedField(obj.Object, map[string]any{"matchLabels": map[string]any{"finalizer-test": ns}},
				"spec", "matchResources", "namespaceSelector")).To(Succeed())
		}
		g.Expect(env.Client.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
	}

	mi := acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: "00000000-0000-0000-0000-000000000001"}}
	acr := acrv1beta2.AcrConfiguration{Server: "example.azurecr.io", Scope: "repository:app:pull", Environment: acrv1beta2.AzureEnvironmentPublicCloud}
	newV1beta2 := func(name string, finalizers ...string) *acrv1beta2.AcrPullBinding {
		return &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Finalizers: finalizers},
			Spec: acrv1beta2.AcrPullBindingSpec{ACR: acr, Auth: mi, ServiceAccountName: "app"}}
	}
	// Policies take effect a moment after they are created; fresh probe bindings until one is mutated.
	probes := 0
	g.Eventually(func() []string {
		probes++
		b := newV1beta2(fmt.Sprintf("probe-%d", probes))
		g.Expect(env.Client.Create(ctx, b)).To(Succeed())
		return b.Finalizers
	}).WithTimeout(activationWindow).Should(ContainElement(acrpullbinding.Finalizer))

	v1beta2 := newV1beta2("plain")
	g.Expect(env.Client.Create(ctx, v1beta2)).To(Succeed())
	g.Expect(v1beta2.Finalizers).To(Equal([]string{acrpullbinding.Finalizer}))

	others := newV1beta2("others", "example.com/keep")
	g.Expect(env.Client.Create(ctx, others)).To(Succeed())
	g.Expect(others.Finalizers).To(Equal([]string{"example.com/keep", acrpullbinding.Finalizer}))

	already := newV1beta2("already", acrpullbinding.Finalizer)
	g.Expect(env.Client.Create(ctx, already)).To(Succeed())
	g.Expect(already.Finalizers).To(Equal([]string{acrpullbinding.Finalizer}))

	legacy := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "legacy"},
		Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: "example.azurecr.io", ManagedIdentityClientID: "00000000-0000-0000-0000-000000000001"}}
	g.Expect(env.Client.Create(ctx, legacy)).To(Succeed())
	g.Expect(legacy.Finalizers).To(Equal([]string{acrpullbinding.Finalizer}))

	// Only creation is mutated: a finalizer removed later stays removed (the controller's business, not the policy's).
	base := v1beta2.DeepCopy()
	v1beta2.Finalizers = nil
	g.Expect(env.Client.Patch(ctx, v1beta2, client.MergeFrom(base))).To(Succeed())
	g.Expect(v1beta2.Finalizers).To(BeEmpty())

	// Outside the policy's namespaces nothing changes.
	elsewhere := newV1beta2("elsewhere")
	elsewhere.Namespace = "default"
	g.Expect(env.Client.Create(ctx, elsewhere)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), elsewhere) })
	g.Expect(elsewhere.Finalizers).NotTo(ContainElement(acrpullbinding.Finalizer))

	// Leave nothing that waits for a controller.
	v1beta2List, v1beta1List := &acrv1beta2.AcrPullBindingList{}, &acrv1beta1.AcrPullBindingList{}
	g.Expect(env.Client.List(ctx, v1beta2List, client.InNamespace(ns))).To(Succeed())
	g.Expect(env.Client.List(ctx, v1beta1List, client.InNamespace(ns))).To(Succeed())
	var all []client.Object
	for i := range v1beta2List.Items {
		all = append(all, &v1beta2List.Items[i])
	}
	for i := range v1beta1List.Items {
		all = append(all, &v1beta1List.Items[i])
	}
	for _, b := range all {
		base := b.DeepCopyObject().(client.Object)
		b.SetFinalizers(nil)
		g.Expect(env.Client.Patch(ctx, b, client.MergeFrom(base))).To(Succeed())
	}
}
