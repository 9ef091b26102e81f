/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// Attack: a user who may create bindings but not edit service accounts names a binding after someone's hand-made
// pull secret (acr-pull-<name>), then deletes it, hoping the controller unhooks that secret from every account in the
// namespace. The binding reports the conflict; deleting it leaves the secret and every reference to it alone.
func TestDeletingAConflictingBindingKeepsTheHandMadeSecretReferenced(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	handMade := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acr-pull-squatter"},
		Type:       corev1.SecretTypeDockerConfigJson,
		Data:       map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"hand.example":{"auth":"aGFuZDptYWRl"}}}`)},
	}
	create(t, handMade)
	serviceAccount(t, ns, "default", "", "acr-pull-squatter")
	serviceAccount(t, ns, "builder", "", "theirs", "acr-pull-squatter")

	b := managedIdentityBinding(ns, "squatter", "default", "repository:alice:pull")
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonSecretConflict)
	g.Expect(k8s.Delete(ctx, b)).To(Succeed())
	eventuallyGone(t, b)

	for sa, want := range map[string][]string{"default": {"acr-pull-squatter"}, "builder": {"theirs", "acr-pull-squatter"}} {
		g.Expect(pullSecretNames(g, ns, sa)).To(Equal(want), "service account %s keeps its reference", sa)
	}
	kept := getSecret(g, ns, "acr-pull-squatter")
	g.Expect(kept.UID).To(Equal(handMade.UID))
	g.Expect(kept.Data).To(Equal(handMade.Data))
}

// The two API versions frame names differently (acr-pull-<name>; <name>-msi-acrpull-secret), so same-named bindings
// never collide (TestSameNameBindingsOfBothVersionsCoexist), but a v1beta2 binding named x-msi-acrpull-secret and a
// v1beta1 binding named acr-pull-x both want the secret acr-pull-x-msi-acrpull-secret. Whichever came first owns it;
// deleting the other, in either direction, leaves the owner's secret, its reference and its Ready state alone.
func TestDeletingTheOtherVersionsCollidingBindingKeepsTheOwnersSecret(t *testing.T) {
	const secretName = "acr-pull-twin-msi-acrpull-secret"
	newV1beta1 := func(ns string) client.Object {
		return &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acr-pull-twin"},
			Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: registryHost, Scope: "repository:alice:pull"}}
	}
	newV1beta2 := func(ns string) client.Object {
		return managedIdentityBinding(ns, "twin-msi-acrpull-secret", "default", "repository:alice:pull")
	}
	for _, tc := range []struct {
		name          string
		owner, other  func(ns string) client.Object
		ownerAPIGroup string
	}{
		{name: "v1beta1 owns", owner: newV1beta1, other: newV1beta2, ownerAPIGroup: acrv1beta1.GroupVersion.Group},
		{name: "v1beta2 owns", owner: newV1beta2, other: newV1beta1, ownerAPIGroup: acrv1beta2.GroupVersion.Group},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			ctx := context.Background()
			ns := newNamespace(t)
			serviceAccount(t, ns, "default", "")
			owner, other := tc.owner(ns), tc.other(ns)
			create(t, owner)
			deleteAtEnd(t, owner)
			eventuallyReadyAny(t, owner, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
			ownersSecret := getSecret(g, ns, secretName)
			g.Expect(ownersSecret.OwnerReferences).To(HaveLen(1))
			g.Expect(ownersSecret.OwnerReferences[0].APIVersion).To(HavePrefix(tc.ownerAPIGroup + "/"))
			g.Expect(pullSecretNames(g, ns, "default")).To(Equal([]string{secretName}))

			create(t, other)
			eventuallyReadyAny(t, other, metav1.ConditionFalse, acrv1beta2.ReasonSecretConflict)
			// The owner would put a dropped reference back at once (TestSecretDroppedFromTheAccountIsAttachedAgain),
			// hiding the window in which new pods start without it: the account must not be written at all.
			account := &corev1.ServiceAccount{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, account)).To(Succeed())
			g.Expect(k8s.Delete(ctx, other)).To(Succeed())
			eventuallyGone(t, other)

			g.Consistently(func(g Gomega) {
				now := &corev1.ServiceAccount{}
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(account), now)).To(Succeed())
				g.Expect(now.ResourceVersion).To(Equal(account.ResourceVersion), "the owner's account was written: %v", now.ImagePullSecrets)
				g.Expect(getSecret(g, ns, secretName).UID).To(Equal(ownersSecret.UID))
			}).WithTimeout(2 * time.Second).Should(Succeed())
			g.Expect(pullSecretNames(g, ns, "default")).To(Equal([]string{secretName}))
			g.Expect(pull(ns, secretName, "alice")).To(Succeed())
			eventuallyReadyAny(t, owner, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
		})
	}
}

// eventuallyReadyAny is eventuallyReady for a binding of either API version.
func eventuallyReadyAny(t *testing.T, b client.Object, status metav1.ConditionStatus, reason string) {
	t.Helper()
	if _, ok := b.(*acrv1beta1.AcrPullBinding); ok {
		eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(b), status, reason)
		return
	}
	eventuallyReady(t, b.(*acrv1beta2.AcrPullBinding), status, reason)
}

// eventuallyGone waits until the controller has let a deleted binding go (its finalizer removed).
func eventuallyGone(t *testing.T, b client.Object) {
	t.Helper()
	NewWithT(t).Eventually(func() bool {
		probe := b.DeepCopyObject().(client.Object)
		return apierrors.IsNotFound(k8s.Get(context.Background(), client.ObjectKeyFromObject(b), probe))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
}
