/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// The seed's workload-identity example: the federated account (serviceAccountRef) differs from the account that
// receives the secret, which msi-acrpull got wrong. The secret pulls the scoped repository and nothing else, and a
// pod created with the target account gets it through ServiceAccount admission.
func TestWorkloadIdentityBindingPullsOnlyTheScopedRepository(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "puller", pullerClientID)
	serviceAccount(t, ns, "app", "", "someone-elses-secret")
	b := workloadIdentityBinding(ns, "pull-binding", "puller", "app", "repository:alice:pull")
	create(t, b)

	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	secret := getSecret(g, ns, "acr-pull-pull-binding")
	g.Expect(secret.Type).To(Equal(corev1.SecretTypeDockerConfigJson))
	g.Expect(secret.Labels).To(HaveKeyWithValue(acrpullbinding.BindingLabel, "pull-binding"))
	g.Expect(secret.Annotations).To(HaveKey(acrpullbinding.ExpiryAnnotation))
	g.Expect(secret.Annotations).To(HaveKey(acrpullbinding.RefreshAnnotation))
	g.Expect(secret.Annotations).To(HaveKey(acrpullbinding.InputsAnnotation))
	g.Expect(secret.OwnerReferences).To(HaveLen(1))
	g.Expect(*secret.OwnerReferences[0].Controller).To(BeTrue())
	g.Expect(secret.OwnerReferences[0].Kind).To(Equal("AcrPullBinding"))

	var cfg struct {
		Auths map[string]struct{ Username, Password, Auth string } `json:"auths"`
	}
	g.Expect(json.Unmarshal(secret.Data[corev1.DockerConfigJsonKey], &cfg)).To(Succeed())
	g.Expect(cfg.Auths).To(HaveKey(registryHost))
	g.Expect(cfg.Auths[registryHost].Username).To(Equal("00000000-0000-0000-0000-000000000000"))

	g.Expect(pull(ns, secret.Name, "alice")).To(Succeed())
	g.Expect(pull(ns, secret.Name, "bob")).To(MatchError(ContainSubstring("UNAUTHORIZED")), "bob is outside the scope")

	// The target account lists the secret after the entry someone else put there; the federated one does not.
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "app") }).
		Should(Equal([]string{"someone-elses-secret", "acr-pull-pull-binding"}))
	g.Expect(pullSecretNames(g, ns, "puller")).To(BeEmpty())

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}, Spec: corev1.PodSpec{
		ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: registryHost + "/alice:" + tag}}}}
	g.Expect(k8s.Create(ctx, pod)).To(Succeed())
	g.Expect(pod.Spec.ImagePullSecrets).To(ContainElement(corev1.LocalObjectReference{Name: "acr-pull-pull-binding"}))

	got := &acrv1beta2.AcrPullBinding{}
	// A pass that ran before the controller's cache held the new account said so in status.error; the pass that
	// attached the secret clears it, in a status write of its own after the account's.
	g.Eventually(func(g Gomega) string {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), got)).To(Succeed())
		return got.Status.Error
	}).WithTimeout(10 * time.Second).Should(BeEmpty())
	g.Expect(got.Status.TokenExpirationTime).NotTo(BeNil())
	g.Expect(got.Status.LastTokenRefreshTime).NotTo(BeNil())
	g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
	g.Expect(got.Status.TokenAudience).To(Equal("https://containerregistry.azure.net"))
	// The finalizer follows once the binding is usable (deferFinalizer).
	g.Eventually(func(g Gomega) []string {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), got)).To(Succeed())
		return got.Finalizers
	}).WithTimeout(30 * time.Second).Should(ContainElement(acrpullbinding.Finalizer))

	// The expiry is exported per binding, for alerts on credentials about to lapse.
	expiry, ok := metricValue(g, "acrpull_token_expiry_timestamp_seconds", map[string]string{"namespace": ns, "binding": "pull-binding"})
	g.Expect(ok).To(BeTrue())
	g.Expect(expiry).To(BeNumerically("==", got.Status.TokenExpirationTime.Unix()))
}

// The seed's managed-identity example, naming the identity by resource ID.
func TestManagedIdentityBindingByResourceIDPulls(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	b := managedIdentityBinding(ns, "mi", "default", "repository:alice:pull")
	b.Spec.Auth.ManagedIdentity = &acrv1beta2.ManagedIdentityAuth{ResourceID: pullerResourceID}
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(pull(ns, "acr-pull-mi", "alice")).To(Succeed())
	g.Expect(pull(ns, "acr-pull-mi", "bob")).NotTo(Succeed())
}

// Fifty bindings sharing identity, registry and scope cost one call per Azure layer, not fifty.
func TestBindingsSharingATokenCauseOneAzureCallPerLayer(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	// An identity of its own, so no earlier test (or earlier run, with -count) has warmed the cache for it.
	sharedClientID := freshIdentity(t, registryHost)
	cloud.ResetCounts()
	var bindings []*acrv1beta2.AcrPullBinding
	for i := range 50 {
		b := managedIdentityBinding(ns, "shared-"+string(rune('a'+i/26))+string(rune('a'+i%26)), "default", "repository:alice:pull")
		b.Spec.Auth.ManagedIdentity.ClientID = sharedClientID
		create(t, b)
		bindings = append(bindings, b)
	}
	for _, b := range bindings {
		eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	}
	g.Expect(cloud.Count(azurefake.IMDSToken)).To(BeEquivalentTo(1))
	g.Expect(cloud.Count(azurefake.ACRExchange)).To(BeEquivalentTo(1))
	g.Expect(cloud.Count(azurefake.ACRToken)).To(BeEquivalentTo(1))
}

// A refresh replaces the token in the same Secret object: kubelet tracks pulled images by the secret's UID.
func TestRefreshUpdatesTheSecretInPlaceBeforeExpiry(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	cloud.SetLifetimes(azurefake.Lifetimes{Entra: time.Hour, ACRRefresh: 3 * time.Hour, ACRAccess: 8 * time.Second})
	defer cloud.SetLifetimes(azurefake.Lifetimes{})
	b := managedIdentityBinding(ns, "refresh", "default", "repository:alice:pull repository:refresh:pull")
	create(t, b)
	deleteAtEnd(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	first := getSecret(g, ns, "acr-pull-refresh")
	firstExpiry, _ := time.Parse(time.RFC3339, first.Annotations[acrpullbinding.ExpiryAnnotation])

	var second *corev1.Secret
	g.Eventually(func(g Gomega) {
		second = getSecret(g, ns, "acr-pull-refresh")
		g.Expect(second.Annotations[acrpullbinding.ExpiryAnnotation]).NotTo(Equal(first.Annotations[acrpullbinding.ExpiryAnnotation]))
	}).WithTimeout(20 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	g.Expect(second.UID).To(Equal(first.UID), "the secret must be updated in place")
	g.Expect(time.Now()).To(BeTemporally("<", firstExpiry), "refreshed before the old token expired")
	g.Expect(pull(ns, "acr-pull-refresh", "alice")).To(Succeed())
}

// An Azure outage longer than a refresh period keeps the valid secret, says why, backs off, and recovers.
func TestAzureOutageKeepsTheValidSecretAndRecovers(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	cloud.SetLifetimes(azurefake.Lifetimes{Entra: time.Hour, ACRRefresh: 3 * time.Hour, ACRAccess: 40 * time.Second})
	defer cloud.SetLifetimes(azurefake.Lifetimes{})
	b := managedIdentityBinding(ns, "outage", "default", "repository:alice:pull repository:outage:pull")
	create(t, b)
	deleteAtEnd(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	before := getSecret(g, ns, "acr-pull-outage")

	cloud.ResetCounts()
	for _, ep := range []azurefake.Endpoint{azurefake.ACRToken, azurefake.ACRExchange, azurefake.IMDSToken} {
		cloud.SetFault(ep, azurefake.Fault{Status: 500})
	}
	// Past the refresh point (40% to 50% of 40 s): the mint fails, and the condition says so. The binding stays
	// Ready while the token it holds is valid: pulls go on working.
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonAzureUnavailable)
	failing := &acrv1beta2.AcrPullBinding{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(b), failing)).To(Succeed())
	g.Expect(failing.Status.Error).NotTo(BeEmpty(), "status.error says what fails")
	g.Expect(readyCondition(g, b).Message).To(ContainSubstring(failing.Status.Error))
	time.Sleep(8 * time.Second)
	after := getSecret(g, ns, "acr-pull-outage")
	g.Expect(after.Data).To(Equal(before.Data), "the still-valid token is kept")
	g.Expect(after.UID).To(Equal(before.UID))
	g.Expect(pull(ns, "acr-pull-outage", "alice")).To(Succeed())
	g.Eventually(func(g Gomega) []string { return warningEvents(g, b) }).Should(ContainElement(acrv1beta2.ReasonAzureUnavailable))
	// Bounded backoff: a handful of attempts over ~10 s, not a hot loop.
	g.Expect(cloud.Count(azurefake.ACRToken)).To(BeNumerically("<=", 8))

	cloud.ClearFaults()
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(getSecret(g, ns, "acr-pull-outage").Data).NotTo(Equal(before.Data))
}

// Changing the target account moves the secret; entries of other writers stay where they are.
func TestTargetServiceAccountChangeMovesTheSecret(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "first", "", "theirs-1")
	serviceAccount(t, ns, "second", "", "theirs-2")
	b := managedIdentityBinding(ns, "mover", "first", "repository:alice:pull")
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "first") }).Should(Equal([]string{"theirs-1", "acr-pull-mover"}))

	edit(t, b, func() { b.Spec.ServiceAccountName = "second" })
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "second") }).Should(Equal([]string{"theirs-2", "acr-pull-mover"}))
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "first") }).Should(Equal([]string{"theirs-1"}))
}

// Deleting a binding unreferences its secret (leaving other entries), deletes it, then releases the binding.
func TestDeleteCleansUpAfterItself(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "", "theirs")
	b := managedIdentityBinding(ns, "doomed", "default", "repository:alice:pull")
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	// The finalizer follows once the binding is usable (deferFinalizer); this is the story of a binding that has it.
	g.Eventually(func(g Gomega) []string {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), b)).To(Succeed())
		return b.Finalizers
	}).WithTimeout(30 * time.Second).Should(ContainElement(acrpullbinding.Finalizer))
	g.Expect(k8s.Delete(ctx, b)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(b), &acrv1beta2.AcrPullBinding{}))
	}).WithTimeout(30 * time.Second).Should(BeTrue())
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "acr-pull-doomed"}, &corev1.Secret{}))).To(BeTrue())
	g.Expect(pullSecretNames(g, ns, "default")).To(Equal([]string{"theirs"}))
}

// A missing target account is reported, and the secret is attached as soon as the account appears.
func TestMissingServiceAccountRecoversWhenItAppears(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	b := managedIdentityBinding(ns, "early", "later", "repository:alice:pull")
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonServiceAccountNotFound)
	serviceAccount(t, ns, "later", "")
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "later") }).Should(Equal([]string{"acr-pull-early"}))
}

// A writer that drops the secret from the account (a GitOps tool replacing the whole list, say) sees it put back at
// once, not at the next refresh, next to the entries that writer set.
func TestSecretDroppedFromTheAccountIsAttachedAgain(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "", "theirs")
	b := managedIdentityBinding(ns, "sticky", "default", "repository:alice:pull")
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "default") }).Should(Equal([]string{"theirs", "acr-pull-sticky"}))

	sa := &corev1.ServiceAccount{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "default"}, sa)).To(Succeed())
	sa.ImagePullSecrets = []corev1.LocalObjectReference{{Name: "theirs"}, {Name: "another"}}
	g.Expect(k8s.Update(ctx, sa)).To(Succeed())
	g.Eventually(func(g Gomega) []string { return pullSecretNames(g, ns, "default") }).WithTimeout(10 * time.Second).
		Should(Equal([]string{"theirs", "another", "acr-pull-sticky"}))
}

// A registry outside --allowed-acr-server-suffixes never sees a token: the binding says why and Azure is not called.
func TestDisallowedServerIsRefusedBeforeAnyTokenIsRequested(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	b := managedIdentityBinding(ns, "lookalike", "default", "repository:alice:pull")
	b.Spec.ACR.Server = "registry.evil.example"
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonServerNotAllowed)
	g.Expect(cloud.HostRequests(b.Spec.ACR.Server)).To(BeZero(), "no token may travel to a disallowed host")
	v, _ := metricValue(g, "acrpull_mint_attempts_total", map[string]string{"reason": acrv1beta2.ReasonServerNotAllowed})
	g.Expect(v).To(BeZero(), "the refusal happens before minting")
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "acr-pull-lookalike"}, &corev1.Secret{})).
		To(MatchError(ContainSubstring("not found")))
}

// Entra ID's refusal of an unfederated account, and a registry refusing an identity without a role, become
// actionable reasons and Warning events.
func TestAzureRefusalsBecomeActionableReasons(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	unfederated := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "unfederated", Annotations: map[string]string{
		"azure.workload.identity/client-id": pullerClientID, "azure.workload.identity/tenant-id": tenantID}}}
	create(t, unfederated)
	serviceAccount(t, ns, "default", "")
	wi := workloadIdentityBinding(ns, "unfederated", "unfederated", "default", "repository:alice:pull")
	create(t, wi)
	eventuallyReady(t, wi, metav1.ConditionFalse, acrv1beta2.ReasonIdentityNotFederated)
	g.Eventually(func(g Gomega) []string { return warningEvents(g, wi) }).Should(ContainElement(acrv1beta2.ReasonIdentityNotFederated))
	// The message says exactly which federated credential is missing, as the apiserver and the controller see it.
	g.Expect(readyCondition(g, wi).Message).To(ContainSubstring(fmt.Sprintf(
		"identity %s needs a federated identity credential with issuer %q, subject %q and audience %q",
		pullerClientID, testenv.Issuer, "system:serviceaccount:"+ns+":unfederated", "api://AzureCRTokenExchange")))

	noRole := managedIdentityBinding(ns, "norole", "default", "repository:alice:pull")
	noRole.Spec.Auth.ManagedIdentity.ClientID = strangerClientID
	create(t, noRole)
	eventuallyReady(t, noRole, metav1.ConditionFalse, acrv1beta2.ReasonRegistryDenied)

	noIDs := workloadIdentityBinding(ns, "noids", "default", "default", "repository:alice:pull")
	create(t, noIDs)
	eventuallyReady(t, noIDs, metav1.ConditionFalse, acrv1beta2.ReasonIdentityMissing)
	c := readyCondition(g, noIDs)
	g.Expect(c.Message).To(ContainSubstring("azure.workload.identity/client-id"))
}

// An AirgappedCloud binding uses the authority and ARM audience from its cloudConfig.
func TestAirgappedCloudUsesItsCloudConfig(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	serviceAccount(t, ns, "puller", pullerClientID)
	cloud.AddAuthorityHost("login.airgap.example")
	cloud.ResetCounts()
	b := workloadIdentityBinding(ns, "airgapped", "puller", "puller", "repository:alice:pull")
	b.Spec.ACR.Environment = acrv1beta2.AzureEnvironmentAirgappedCloud
	b.Spec.ACR.CloudConfig = &acrv1beta2.AirgappedCloudConfiguration{
		EntraAuthorityHost: "https://login.airgap.example/", ResourceManagerAudience: "https://management.airgap.example/"}
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(cloud.HostRequests("login.airgap.example")).To(BeNumerically(">=", 1), "the token came from the air-gapped authority")
	g.Expect(cloud.HostRequests("login.microsoftonline.com")).To(BeZero(), "and the public one was never asked")
	g.Expect(pull(ns, "acr-pull-airgapped", "alice")).To(Succeed())
}

// Specs that can never work are refused at admission with messages that say what to fix.
func TestCRDRejectsWhatCanNeverWork(t *testing.T) {
	ns := newNamespace(t)
	cases := map[string]struct {
		mutate  func(*acrv1beta2.AcrPullBinding)
		message string
	}{
		"no auth": {func(b *acrv1beta2.AcrPullBinding) { b.Spec.Auth = acrv1beta2.AuthenticationMethod{} },
			"exactly one of managedIdentity, workloadIdentity or servicePrincipal must be set"},
		"both auths": {func(b *acrv1beta2.AcrPullBinding) {
			b.Spec.Auth.WorkloadIdentity = &acrv1beta2.WorkloadIdentityAuth{ServiceAccountName: "x"}
		}, "exactly one of managedIdentity, workloadIdentity or servicePrincipal must be set"},
		"MI and SP": {func(b *acrv1beta2.AcrPullBinding) {
			b.Spec.Auth.ServicePrincipal = &acrv1beta2.ServicePrincipalAuth{TenantID: tenantID, ClientID: pullerClientID,
				SecretRef: acrv1beta2.ServicePrincipalSecretReference{Name: "sp"}}
		}, "exactly one of managedIdentity, workloadIdentity or servicePrincipal must be set"},
		"SP without a secret": {func(b *acrv1beta2.AcrPullBinding) {
			b.Spec.Auth = acrv1beta2.AuthenticationMethod{ServicePrincipal: &acrv1beta2.ServicePrincipalAuth{TenantID: tenantID, ClientID: pullerClientID}}
		}, "spec.auth.servicePrincipal.secretRef.name"},
		"SP secret in another namespace": {func(b *acrv1beta2.AcrPullBinding) {
			b.Spec.Auth = acrv1beta2.AuthenticationMethod{ServicePrincipal: &acrv1beta2.ServicePrincipalAuth{TenantID: tenantID, ClientID: pullerClientID,
				SecretRef: acrv1beta2.ServicePrincipalSecretReference{Name: "victim/sp"}}}
		}, "spec.auth.servicePrincipal.secretRef.name"},
		"SP tenant not a GUID": {func(b *acrv1beta2.AcrPullBinding) {
			b.Spec.Auth = acrv1beta2.AuthenticationMethod{ServicePrincipal: &acrv1beta2.ServicePrincipalAuth{TenantID: "contoso.onmicrosoft.com", ClientID: pullerClientID,
				SecretRef: acrv1beta2.ServicePrincipalSecretReference{Name: "sp"}}}
		}, "spec.auth.servicePrincipal.tenantID"},
		"both MI ids": {func(b *acrv1beta2.AcrPullBinding) { b.Spec.Auth.ManagedIdentity.ResourceID = pullerResourceID },
			"exactly one of clientID or resourceID must be set"},
		"WI client without tenant": {func(b *acrv1beta2.AcrPullBinding) {
			b.Spec.Auth = acrv1beta2.AuthenticationMethod{WorkloadIdentity: &acrv1beta2.WorkloadIdentityAuth{ServiceAccountName: "x", ClientID: pullerClientID}}
		}, "clientID and tenantID must be set together"},
		"airgapped without cloudConfig": {func(b *acrv1beta2.AcrPullBinding) { b.Spec.ACR.Environment = acrv1beta2.AzureEnvironmentAirgappedCloud },
			"cloudConfig is required when environment is AirgappedCloud"},
		"cloudConfig on public cloud": {func(b *acrv1beta2.AcrPullBinding) {
			b.Spec.ACR.CloudConfig = &acrv1beta2.AirgappedCloudConfiguration{EntraAuthorityHost: "https://login.example/", ResourceManagerAudience: "x"}
		}, "must not be set otherwise"},
		"scheme":      {func(b *acrv1beta2.AcrPullBinding) { b.Spec.ACR.Server = "https://example.azurecr.io" }, "server must be a fully-qualified domain name"},
		"port":        {func(b *acrv1beta2.AcrPullBinding) { b.Spec.ACR.Server = "example.azurecr.io:443" }, "server must be a fully-qualified domain name"},
		"path":        {func(b *acrv1beta2.AcrPullBinding) { b.Spec.ACR.Server = "example.azurecr.io/x" }, "server must be a fully-qualified domain name"},
		"wildcard":    {func(b *acrv1beta2.AcrPullBinding) { b.Spec.ACR.Scope = "repository:*:pull" }, "scope must not contain wildcards"},
		"empty scope": {func(b *acrv1beta2.AcrPullBinding) { b.Spec.ACR.Scope = "" }, "spec.acr.scope"},
		"bad scope":   {func(b *acrv1beta2.AcrPullBinding) { b.Spec.ACR.Scope = "alice" }, "scope must be space-separated entries"},
		"bad resource ID": {func(b *acrv1beta2.AcrPullBinding) {
			b.Spec.Auth.ManagedIdentity = &acrv1beta2.ManagedIdentityAuth{ResourceID: "/subscriptions/x/puller"}
		}, "resourceID must look like"},
		"bad client ID": {func(b *acrv1beta2.AcrPullBinding) { b.Spec.Auth.ManagedIdentity.ClientID = "puller" }, "spec.auth.managedIdentity.clientID"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			b := managedIdentityBinding(ns, "invalid", "default", "repository:alice:pull")
			tc.mutate(b)
			NewWithT(t).Expect(k8s.Create(context.Background(), b)).To(MatchError(ContainSubstring(tc.message)))
		})
	}
	// Multiple scopes are fine.
	ok := managedIdentityBinding(ns, "multi", "default", "repository:a:pull repository:team/b-c:pull,push")
	NewWithT(t).Expect(k8s.Create(context.Background(), ok)).To(Succeed())
}
