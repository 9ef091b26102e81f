/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/identityallowlist"
)

// Identities of the allow-list test's own: azidentity keeps managed-identity tokens in a process-wide cache, so an
// identity another test used may need no IMDS call here, which would hide the calls this test counts.
const (
	allowListedClientID   = "44444444-4444-4444-4444-444444444444"
	allowListedResourceID = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/allow-listed"
	// unlistedClientID is assigned to the node and may pull alice too: only the allow-list stands in its way.
	unlistedClientID   = "55555555-5555-5555-5555-555555555555"
	unlistedResourceID = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/unlisted"
)

// Attack: a tenant who may create bindings names a managed identity assigned to the nodes that the administrator
// gave another namespace (or none), as a binding made before the admission policy existed, or while it was off. The
// controller refuses it by its own allow-list: the binding says why, a Warning Event says so, and IMDS is never
// asked for the identity. The v1beta1 default identity counts as the identity of a binding naming none. When the
// allow-list is tightened later, a secret minted before is kept, attached and working, but no longer refreshed.
func TestIdentityOutsideTheAllowListIsRefusedWithoutAnAzureCall(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const shardLabel, shard = "acrpull.test/shard", "identity-allow-list"
	tenant, other := newNamespace(t), newNamespace(t)
	cloud.AddIdentity(azurefake.Identity{ClientID: allowListedClientID, ResourceID: allowListedResourceID, TenantID: tenantID, AssignedToVM: true})
	cloud.AddIdentity(azurefake.Identity{ClientID: unlistedClientID, ResourceID: unlistedResourceID, TenantID: tenantID, AssignedToVM: true})
	for _, id := range []string{allowListedClientID, unlistedClientID} {
		cloud.AddRoleAssignment(id, registryHost, []string{"alice"}, []string{"pull"})
	}

	// The tenant's namespace is given the allow-listed identity (its client ID written upper-case), by client ID
	// only; the unlisted one is given to nobody.
	allowListDir := t.TempDir()
	writeAllowList(t, allowListDir, map[string]string{
		"tenant.namespaces": tenant, "tenant.clientIDs": strings.ToUpper(allowListedClientID), "tenant.resourceIDs": "",
	})
	allowList, err := identityallowlist.Open(allowListDir)
	g.Expect(err).NotTo(HaveOccurred())
	imds := &imdsCalls{next: cloud.HTTPClient().Transport, byIdentity: map[string]int{}}
	stop := startShardControllerWith(t, env.Config, labels.SelectorFromSet(labels.Set{shardLabel: shard}),
		&http.Client{Transport: imds}, func(c *acrpullbinding.Config) {
			c.ManagedIdentityAllowList = allowList
			c.V1beta1 = acrpullbinding.V1beta1Defaults{ACRServer: registryHost, ClientID: unlistedClientID}
		})
	defer stop()
	shardLabels := map[string]string{pausedLabel: "true", shardLabel: shard}

	for _, ns := range []string{tenant, other} {
		serviceAccount(t, ns, "default", "")
	}
	allowed := managedIdentityBinding(tenant, "allowed", "default", "repository:alice:pull")
	allowed.Spec.Auth.ManagedIdentity.ClientID = allowListedClientID
	unlisted := managedIdentityBinding(tenant, "unlisted", "default", "repository:alice:pull")
	unlisted.Spec.Auth.ManagedIdentity.ClientID = unlistedClientID
	elsewhere := managedIdentityBinding(other, "elsewhere", "default", "repository:alice:pull")
	elsewhere.Spec.Auth.ManagedIdentity.ClientID = allowListedClientID
	byResource := managedIdentityBinding(tenant, "by-resource", "default", "repository:alice:pull")
	byResource.Spec.Auth.ManagedIdentity = &acrv1beta2.ManagedIdentityAuth{ResourceID: allowListedResourceID}
	legacy := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "legacy", Labels: shardLabels},
		Spec: acrv1beta1.AcrPullBindingSpec{Scope: "repository:alice:pull"}}
	for _, b := range []*acrv1beta2.AcrPullBinding{allowed, unlisted, elsewhere, byResource} {
		b.Labels = shardLabels
		create(t, b)
		deleteAtEnd(t, b)
	}
	create(t, legacy)
	deleteAtEnd(t, legacy)

	eventuallyReady(t, allowed, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Expect(pull(tenant, "acr-pull-allowed", "alice")).To(Succeed())
	for b, words := range map[*acrv1beta2.AcrPullBinding][]string{
		unlisted:   {unlistedClientID, tenant},
		elsewhere:  {allowListedClientID, other},
		byResource: {allowListedResourceID, tenant},
	} {
		eventuallyReady(t, b, metav1.ConditionFalse, acrv1beta2.ReasonIdentityNotAllowed)
		c := readyCondition(g, b)
		for _, w := range words {
			g.Expect(c.Message).To(ContainSubstring(w))
		}
		g.Eventually(func(g Gomega) []string { return warningEvents(g, b) }).Should(ContainElement(acrv1beta2.ReasonIdentityNotAllowed))
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: "acr-pull-" + b.Name}, &metav1.PartialObjectMetadata{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"}})).To(MatchError(ContainSubstring("not found")))
	}
	eventuallyReadyV1beta1(t, client.ObjectKeyFromObject(legacy), metav1.ConditionFalse, acrv1beta2.ReasonIdentityNotAllowed)

	g.Expect(imds.count(allowListedClientID)).To(BeNumerically(">", 0), "the counter sees the allowed identity's calls")
	g.Expect(imds.count(unlistedClientID)).To(BeZero(), "IMDS was asked for a refused identity")
	g.Expect(imds.count(allowListedResourceID)).To(BeZero(), "IMDS was asked for a refused identity")

	// Tightened: the allowed binding's secret stays as it is, attached and working, until its token expires; the
	// binding says it is no longer refreshed.
	before := getSecret(g, tenant, "acr-pull-allowed")
	writeAllowList(t, allowListDir, map[string]string{"tenant.namespaces": tenant, "tenant.clientIDs": ""})
	calls := imds.count(allowListedClientID)
	edit(t, allowed, func() { allowed.Annotations = map[string]string{"acrpull.test/nudge": "1"} })
	eventuallyReady(t, allowed, metav1.ConditionFalse, acrv1beta2.ReasonIdentityNotAllowed)
	g.Expect(readyCondition(g, allowed).Message).To(ContainSubstring("no longer refreshed"))
	after := getSecret(g, tenant, "acr-pull-allowed")
	g.Expect(after.UID).To(Equal(before.UID))
	g.Expect(after.Data).To(Equal(before.Data))
	g.Expect(pullSecretNames(g, tenant, "default")).To(ContainElement("acr-pull-allowed"))
	g.Expect(pull(tenant, "acr-pull-allowed", "alice")).To(Succeed())
	g.Expect(imds.count(allowListedClientID)).To(Equal(calls))
}

// writeAllowList replaces the allow-list directory's files with data, as keys of a ConfigMap.
func writeAllowList(t *testing.T, dir string, data map[string]string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// imdsCalls counts the managed-identity token requests a controller sends, by the identity asked for (lower-cased
// client ID or resource ID).
type imdsCalls struct {
	next       http.RoundTripper
	mu         sync.Mutex
	byIdentity map[string]int
}

func (c *imdsCalls) RoundTrip(req *http.Request) (*http.Response, error) {
	if strings.HasSuffix(req.URL.Path, "/metadata/identity/oauth2/token") {
		q := req.URL.Query()
		c.mu.Lock()
		for _, id := range []string{q.Get("client_id"), q.Get("msi_res_id"), q.Get("mi_res_id")} {
			if id != "" {
				c.byIdentity[strings.ToLower(id)]++
			}
		}
		c.mu.Unlock()
	}
	return c.next.RoundTrip(req)
}

func (c *imdsCalls) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byIdentity[strings.ToLower(id)]
}
