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
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// attackerAuthority is a host a binding's author controls. The fake cloud serves it like an authority, so a token
// sent there would be accepted and the binding would become Ready: only the allow-list stands in the way.
const attackerAuthority = "login.attacker.example"

// authorityTestClientID is an identity of this test's own, so no token cached for another test's binding at the
// air-gapped authority stands in for a request (and none of this test's for theirs).
const authorityTestClientID = "44444444-4444-4444-4444-444444444444"

func airgapped(b *acrv1beta2.AcrPullBinding, authority string) *acrv1beta2.AcrPullBinding {
	b.Spec.ACR.Environment = acrv1beta2.AzureEnvironmentAirgappedCloud
	b.Spec.ACR.CloudConfig = &acrv1beta2.AirgappedCloudConfiguration{
		EntraAuthorityHost: authority, ResourceManagerAudience: "https://management.airgap.example/"}
	return b
}

// Attack: a tenant writes a workload-identity AcrPullBinding for AirgappedCloud whose entraAuthorityHost is its own
// server; the controller would request a token of the federated service account (which the real Entra ID accepts as
// an assertion) and post it there. Defence: only the known clouds' authorities and --allowed-authority-hosts'; a
// refused binding is Ready=False AuthorityHostNotAllowed with a Warning Event, nothing is sent, and the secret it
// already had stays, valid, where it was.
func TestAuthorityHostNotAllowedSendsNothing(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	cloud.AddIdentity(azurefake.Identity{ClientID: authorityTestClientID, PrincipalID: "p-authority-test", TenantID: tenantID})
	cloud.AddRoleAssignment(authorityTestClientID, registryHost, []string{"alice"}, []string{"pull"})
	serviceAccount(t, ns, "puller", authorityTestClientID)
	cloud.AddAuthorityHost(sovereignAuthority)
	cloud.AddAuthorityHost(attackerAuthority)
	cloud.AddARMAudience("https://management.airgap.example/")

	// A binding at the allowed air-gapped authority works, and has a secret.
	b := airgapped(workloadIdentityBinding(ns, "redirected", "puller", "puller", "repository:alice:pull"), "https://"+sovereignAuthority+"/")
	create(t, b)
	deleteAtEnd(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	before := getSecret(g, ns, "acr-pull-redirected")

	// Its author points it at their own server, in a few spellings; then a new binding starts there.
	for _, authority := range []string{"https://" + attackerAuthority + "/", "https://LOGIN.Attacker.example:443", "https://" + sovereignAuthority + "@" + attackerAuthority + "/"} {
		edit(t, b, func() { b.Spec.ACR.CloudConfig.EntraAuthorityHost = authority })
		// Each pass is seen through: the condition is about this generation.
		g.Eventually(func(g Gomega) {
			got := &acrv1beta2.AcrPullBinding{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), got)).To(Succeed())
			c := meta.FindStatusCondition(got.Status.Conditions, acrv1beta2.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.ObservedGeneration).To(Equal(got.Generation))
			g.Expect(c.Reason).To(Equal(acrv1beta2.ReasonAuthorityHostNotAllowed), "%s: %s", authority, c.Message)
		}).WithTimeout(60 * time.Second).Should(Succeed())
	}
	fresh := airgapped(workloadIdentityBinding(ns, "fresh", "puller", "puller", "repository:alice:pull"), "https://"+attackerAuthority+"/")
	create(t, fresh)
	deleteAtEnd(t, fresh)
	eventuallyReady(t, fresh, metav1.ConditionFalse, acrv1beta2.ReasonAuthorityHostNotAllowed)

	c := readyCondition(g, fresh)
	g.Expect(c.Message).To(ContainSubstring("https://" + attackerAuthority + "/ is not an Azure cloud's Entra ID authority"))
	g.Expect(c.Message).To(ContainSubstring("--allowed-authority-hosts"))
	g.Expect(c.Message).To(ContainSubstring("allowedAuthorityHosts"))
	g.Eventually(func(g Gomega) []string { return warningEvents(g, fresh) }).
		Should(ContainElement(acrv1beta2.ReasonAuthorityHostNotAllowed))
	g.Expect(cloud.HostRequests(attackerAuthority)).To(BeZero(), "a request reached the attacker's authority")

	// The old secret is untouched and still attached; no secret was made for the new binding.
	after := getSecret(g, ns, "acr-pull-redirected")
	g.Expect(after.ResourceVersion).To(Equal(before.ResourceVersion))
	g.Expect(pullSecretNames(g, ns, "puller")).To(ContainElement("acr-pull-redirected"))
	g.Expect(pull(ns, "acr-pull-redirected", "alice")).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "acr-pull-fresh"}, after)).NotTo(Succeed())

	// A controller started with the host in --allowed-authority-hosts sends the token there, as asked.
	const shardLabel, shard = "acrpull.test/shard", "authority"
	stop := startShardController(t, env.Config, labels.SelectorFromSet(labels.Set{shardLabel: shard}), func(c *acrpullbinding.Config) {
		c.AuthorityHosts = mustAuthorityHosts(attackerAuthority)
	})
	defer stop()
	allowed := airgapped(workloadIdentityBinding(ns, "allowed", "puller", "puller", "repository:alice:pull"), "https://"+attackerAuthority+"/")
	allowed.Labels = map[string]string{pausedLabel: "true", shardLabel: shard}
	create(t, allowed)
	deleteAtEnd(t, allowed)
	NewWithT(t).Eventually(func(g Gomega) {
		c := readyCondition(g, allowed)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(acrv1beta2.ReasonTokenMinted), "message: %s", c.Message)
	}).WithTimeout(60 * time.Second).Should(Succeed())
	g.Expect(cloud.HostRequests(attackerAuthority)).To(BeNumerically(">=", 1))
}
