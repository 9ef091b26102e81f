/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/registrytest"
)

// verifiedCondition fetches a binding of either version and returns its Verified condition (nil while there is none).
func verifiedCondition(g Gomega, obj client.Object) *metav1.Condition {
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	switch b := obj.(type) {
	case *acrv1beta2.AcrPullBinding:
		return meta.FindStatusCondition(b.Status.Conditions, acrv1beta2.ConditionVerified)
	case *acrv1beta1.AcrPullBinding:
		return meta.FindStatusCondition(b.Status.Conditions, acrv1beta2.ConditionVerified)
	}
	return nil
}

func eventuallyVerified(t *testing.T, obj client.Object, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var c *metav1.Condition
	NewWithT(t).Eventually(func(g Gomega) {
		c = verifiedCondition(g, obj)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status), "message: %s", c.Message)
		g.Expect(c.Reason).To(Equal(reason), "message: %s", c.Message)
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	return c
}

func pullChecks(g Gomega, reason string) float64 {
	v, _ := metricValue(g, "acrpull_pull_checks_total", map[string]string{"reason": reason})
	return v
}

// The registry behind the fake cloud answers the check with the new credential, and each answer becomes the
// Verified condition, while the secret is written and Ready whatever the answer: a repository the credential reads
// (True), a scope naming a repository the identity may not pull (its token grants nothing there), and a repository
// that does not exist for an identity that may pull every repository.
func TestVerifiedSaysWhatTheRegistryAnswered(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "app", "")
	const readerClientID = "44444444-4444-4444-4444-444444444444"
	cloud.AddIdentity(azurefake.Identity{ClientID: readerClientID, TenantID: tenantID, AssignedToVM: true})
	cloud.AddRoleAssignment(readerClientID, registryHost, []string{"*"}, []string{"pull"})

	pulls := managedIdentityBinding(ns, "pulls", "app", "repository:alice:pull")
	denied := managedIdentityBinding(ns, "denied", "app", "repository:bob:pull")
	missing := managedIdentityBinding(ns, "missing", "app", "repository:no-such-repository:pull")
	missing.Spec.Auth.ManagedIdentity.ClientID = readerClientID
	for _, b := range []*acrv1beta2.AcrPullBinding{pulls, denied, missing} {
		create(t, b)
		deleteAtEnd(t, b)
	}
	for _, tc := range []struct {
		b      *acrv1beta2.AcrPullBinding
		status metav1.ConditionStatus
		reason string
	}{
		{pulls, metav1.ConditionTrue, acrv1beta2.ReasonPullVerified},
		{denied, metav1.ConditionFalse, acrv1beta2.ReasonScopeDenied},
		{missing, metav1.ConditionFalse, acrv1beta2.ReasonRepositoryNotFound},
	} {
		c := eventuallyVerified(t, tc.b, tc.status, tc.reason)
		g.Expect(c.Message).To(ContainSubstring(tc.b.Spec.ACR.Scope[len("repository:") : len(tc.b.Spec.ACR.Scope)-len(":pull")]))
		// The secret was written all the same: verification never holds it back.
		eventuallyReady(t, tc.b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
		getSecret(g, ns, "acr-pull-"+tc.b.Name)
	}
	// What the condition says is what a real pull finds.
	g.Expect(pull(ns, "acr-pull-pulls", "alice")).To(Succeed())
	g.Expect(registrytest.IsDenied(pull(ns, "acr-pull-denied", "bob"))).To(BeTrue())
	g.Expect(registrytest.StatusCode(pull(ns, "acr-pull-missing", "no-such-repository"))).To(Equal(404))
	// A binding that enters a failed verification says so in a Warning Event, as a failed Ready does.
	g.Eventually(func(g Gomega) []string { return warningEvents(g, denied) }).Should(ContainElement(acrv1beta2.ReasonScopeDenied))
}

// A registry that is down (its process stopped, the cloud's token endpoints still answering) leaves the check without
// an answer: RegistryUnreachable, and the secret is written and Ready.
func TestVerifiedRegistryUnreachable(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "app", "")
	const downHost = "down.azurecr.io"
	down := registrytest.Start(t, cloud, downHost)
	cloud.AddRoleAssignment(pullerClientID, downHost, []string{"alice"}, []string{"pull"})
	down.Close()

	b := managedIdentityBinding(ns, "down", "app", "repository:alice:pull")
	b.Spec.ACR.Server = downHost
	create(t, b)
	deleteAtEnd(t, b)
	c := eventuallyVerified(t, b, metav1.ConditionFalse, acrv1beta2.ReasonRegistryUnreachable)
	g.Expect(c.Message).To(ContainSubstring("HTTP 502"))
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	getSecret(g, ns, "acr-pull-down")
}

// Bindings sharing a credential share its check: one registry request for all of them, in two namespaces and
// through shareCredential's siblings alike.
func TestBindingsSharingACredentialAreVerifiedOnce(t *testing.T) {
	g := NewWithT(t)
	// An identity of its own, so no earlier test (or earlier run, with -count) has minted and checked its credential.
	sharedClientID := freshIdentity(t, registryHost)
	before := pullChecks(g, acrv1beta2.ReasonPullVerified)
	cloud.ResetCounts()

	var bindings []*acrv1beta2.AcrPullBinding
	for _, ns := range []string{newNamespace(t), newNamespace(t)} {
		serviceAccount(t, ns, "app", "")
		for i := range 10 {
			b := managedIdentityBinding(ns, fmt.Sprintf("shared-%d", i), "app", "repository:alice:pull")
			b.Spec.Auth.ManagedIdentity.ClientID = sharedClientID
			create(t, b)
			deleteAtEnd(t, b)
			bindings = append(bindings, b)
		}
	}
	for _, b := range bindings {
		eventuallyVerified(t, b, metav1.ConditionTrue, acrv1beta2.ReasonPullVerified)
	}
	g.Expect(cloud.Count(azurefake.ACRToken)).To(BeEquivalentTo(1), "one credential minted")
	g.Expect(cloud.Count(azurefake.RegistryV2)).To(BeEquivalentTo(1), "one registry request for the one credential")
	g.Expect(pullChecks(g, acrv1beta2.ReasonPullVerified) - before).To(BeEquivalentTo(1))
	v, ok := metricValue(g, "acrpull_bindings_verified",
		map[string]string{"controller": "acrpullbinding-v1beta2", "verified": "True", "reason": acrv1beta2.ReasonPullVerified})
	g.Expect(ok).To(BeTrue())
	g.Expect(v).To(BeNumerically(">=", len(bindings)))
}

// A registry-wide v1beta1 credential names no repository: Verified is Unknown, and the registry is not asked.
func TestRegistryWideCredentialIsNotChecked(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	wideClientID := freshIdentity(t, registryHost)
	cloud.ResetCounts()
	b := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "wide"},
		Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: registryHost, ManagedIdentityClientID: wideClientID}}
	create(t, b)
	deleteAtEnd(t, b)
	eventuallyVerified(t, b, metav1.ConditionUnknown, acrv1beta2.ReasonRegistryWideScope)
	g.Expect(cloud.Count(azurefake.RegistryV2)).To(BeZero())
}
