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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/dockerconfig"
)

func eventuallyReadyV1beta1(t *testing.T, key client.ObjectKey, status metav1.ConditionStatus, reason string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		got := &acrv1beta1.AcrPullBinding{}
		g.Expect(k8s.Get(context.Background(), key, got)).To(Succeed())
		c := meta.FindStatusCondition(got.Status.Conditions, acrv1beta2.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status), "message: %s", c.Message)
		g.Expect(c.Reason).To(Equal(reason), "message: %s", c.Message)
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
}

// Seed 001's example, applied as YAML unchanged but for test values: an unscoped v1beta1 binding gets the
// registry-wide refresh token, which pulls what the identity's role allows and nothing else.
func TestSeed001ExampleAppliesUnchangedAndPulls(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	manifest := `
apiVersion: msi-acrpull.microsoft.com/v1beta1
kind: AcrPullBinding
metadata:
  name: acrpulltest
spec:
  acrServer: ` + registryHost + `
  managedIdentityResourceID: ` + pullerResourceID + `
`
	b := &acrv1beta1.AcrPullBinding{}
	g.Expect(yaml.UnmarshalStrict([]byte(manifest), b)).To(Succeed())
	b.Namespace = ns
	create(t, b)
	eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(b), metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(b.Spec.ServiceAccountName).To(Equal("default"), "defaulted by the CRD")

	secret := getSecret(g, ns, "acrpulltest-msi-acrpull-secret")
	g.Expect(secret.Labels).To(HaveKeyWithValue(acrpullbinding.BindingLabel, "acrpulltest"))
	g.Expect(pull(ns, secret.Name, "alice")).To(Succeed())
	g.Expect(pull(ns, secret.Name, "bob")).NotTo(Succeed())
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "default") }).Should(Equal([]string{secret.Name}))
}

// Empty fields take the controller defaults (ACR_SERVER, MANAGED_IDENTITY_CLIENT_ID); an identity in the spec
// beats the default whichever kind of ID each is (msi-acrpull let an env client ID beat a spec resource ID).
func TestV1beta1DefaultsAndSpecBeatsEnv(t *testing.T) {
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	defaulted := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "defaulted"},
		Spec: acrv1beta1.AcrPullBindingSpec{Scope: "repository:alice:pull"}}
	create(t, defaulted)
	eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(defaulted), metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	NewWithT(t).Expect(pull(ns, "defaulted-msi-acrpull-secret", "alice")).To(Succeed())

	// The default client ID (puller) would work; the spec's resource ID (stranger, no role) must win and be refused.
	specWins := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "spec-wins"},
		Spec: acrv1beta1.AcrPullBindingSpec{ManagedIdentityResourceID: strangerResourceID}}
	create(t, specWins)
	eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(specWins), metav1.ConditionFalse, acrv1beta2.ReasonRegistryDenied)
}

// A v1beta1 and a v1beta2 binding of the same name in one namespace keep separate secrets, and deleting one leaves
// the other's alone (msi-acrpull indexed secrets by name only, so each deleted the other's).
func TestSameNameBindingsOfBothVersionsCoexist(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	old := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "twin"},
		Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: registryHost, Scope: "repository:alice:pull"}}
	current := managedIdentityBinding(ns, "twin", "default", "repository:alice:pull")
	create(t, old)
	create(t, current)
	eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(old), metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	eventuallyReady(t, current, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "default") }).
		Should(ConsistOf("twin-msi-acrpull-secret", "acr-pull-twin"))

	g.Expect(k8s.Delete(ctx, current)).To(Succeed())
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "default") }).Should(Equal([]string{"twin-msi-acrpull-secret"}))
	g.Consistently(func() error { return pull(ns, "twin-msi-acrpull-secret", "alice") }).WithTimeout(3 * time.Second).Should(Succeed())
	eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(old), metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
}

// A v1beta1 target change moves the legacy-named secret too.
func TestV1beta1TargetChangeMovesTheLegacyNamedSecret(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "first", "", "theirs")
	serviceAccount(t, ns, "second", "")
	b := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mover"},
		Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: registryHost, Scope: "repository:alice:pull", ServiceAccountName: "first"}}
	create(t, b)
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "first") }).Should(Equal([]string{"theirs", "mover-msi-acrpull-secret"}))
	edit(t, b, func() { b.Spec.ServiceAccountName = "second" })
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "second") }).Should(Equal([]string{"mover-msi-acrpull-secret"}))
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "first") }).Should(Equal([]string{"theirs"}))
}

// legacyInstall stages what msi-acrpull leaves in a namespace: a v1beta1 binding with its finalizer, an unlabelled
// secret it owns holding a working registry token, and the service account's reference to it. The binding carries
// the paused label so the controller under test ignores it until the test hands it over.
func legacyInstall(t *testing.T, ns, name string) *acrv1beta1.AcrPullBinding {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	b := &acrv1beta1.AcrPullBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{pausedLabel: "true"},
			Finalizers: []string{acrpullbinding.Finalizer}},
		Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: registryHost, ManagedIdentityClientID: pullerClientID, Scope: "repository:alice:pull"},
	}
	create(t, b)
	// Mint the way msi-acrpull did: IMDS, exchange, scoped token.
	az := azauth.NewClient(azauth.Options{HTTPClient: cloud.HTTPClient()})
	entra, err := az.ManagedIdentityToken(ctx, azauth.ManagedIdentity{ClientID: pullerClientID}, "https://management.azure.com/")
	g.Expect(err).NotTo(HaveOccurred())
	rt, err := az.ExchangeForRefreshToken(ctx, registryHost, entra)
	g.Expect(err).NotTo(HaveOccurred())
	at, err := az.AccessToken(ctx, registryHost, "repository:alice:pull", rt)
	g.Expect(err).NotTo(HaveOccurred())
	payload, err := dockerconfig.Render(registryHost, at.Value)
	g.Expect(err).NotTo(HaveOccurred())
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-msi-acrpull-secret",
			Annotations: map[string]string{acrpullbinding.ExpiryAnnotation: at.ExpiresAt.UTC().Format(time.RFC3339)},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "msi-acrpull.microsoft.com/v1beta1", Kind: "AcrPullBinding",
				Name: name, UID: b.UID, Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true)}}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: payload},
	}
	create(t, secret)
	serviceAccount(t, ns, "default", "", secret.Name)
	g.Expect(pull(ns, secret.Name, "alice")).To(Succeed())
	return b
}

func handOver(t *testing.T, obj client.Object) {
	t.Helper()
	edit(t, obj, func() {
		labels := obj.GetLabels()
		delete(labels, pausedLabel)
		obj.SetLabels(labels)
	})
}

// A secret msi-acrpull left without the label is found, labelled and refreshed in place, without a restart.
func TestLegacySecretIsAdoptedInPlace(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	b := legacyInstall(t, ns, "legacy")
	before := getSecret(g, ns, "legacy-msi-acrpull-secret")
	handOver(t, b)
	eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(b), metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	after := getSecret(g, ns, "legacy-msi-acrpull-secret")
	g.Expect(after.UID).To(Equal(before.UID))
	g.Expect(after.Labels).To(HaveKeyWithValue(acrpullbinding.BindingLabel, "legacy"))
	g.Expect(pull(ns, after.Name, "alice")).To(Succeed())
	g.Expect(pullSecretNames(g, ns, "default")).To(Equal([]string{"legacy-msi-acrpull-secret"}))
}

// The migration seed 000 describes, from an msi-acrpull install to v1beta2, with pulls working at every step and
// nothing left behind.
func TestMigrationFromMsiAcrpullToV1beta2(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	old := legacyInstall(t, ns, "app")

	// Step 1: acrpull is installed and takes over the v1beta1 binding.
	handOver(t, old)
	eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(old), metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(pull(ns, "app-msi-acrpull-secret", "alice")).To(Succeed())

	// Step 2: the user adds the v1beta2 binding next to it.
	current := managedIdentityBinding(ns, "app", "default", "repository:alice:pull")
	create(t, current)
	eventuallyReady(t, current, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(pull(ns, "acr-pull-app", "alice")).To(Succeed())
	g.Expect(pull(ns, "app-msi-acrpull-secret", "alice")).To(Succeed())

	// Step 3: the v1beta1 binding is deleted; only the v1beta2 secret remains, and it pulls.
	g.Expect(k8s.Delete(ctx, old)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(old), &acrv1beta1.AcrPullBinding{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app-msi-acrpull-secret"}, &corev1.Secret{}))).To(BeTrue())
	g.Expect(pullSecretNames(g, ns, "default")).To(Equal([]string{"acr-pull-app"}))
	g.Expect(pull(ns, "acr-pull-app", "alice")).To(Succeed())
}

func ptrTo[T any](v T) *T { return &v }

// A binding deleted before acrpull ever labelled its legacy secret still takes that secret with it.
func TestDeletingBeforeAdoptionRemovesTheLegacySecret(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	b := legacyInstall(t, ns, "gone")
	g.Expect(k8s.Delete(ctx, b)).To(Succeed())
	handOver(t, b)
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(b), &acrv1beta1.AcrPullBinding{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "gone-msi-acrpull-secret"}, &corev1.Secret{}))).To(BeTrue())
	g.Expect(pullSecretNames(g, ns, "default")).To(BeEmpty())
}
