/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

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

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// The attack: a tenant with edit rights in their namespace names their own host as a binding's registry, hoping the
// controller sends it the identity's Entra token for the exchange. An operator who empties the chart's
// allowedACRServerSuffixes (or runs the binary without --allowed-acr-server-suffixes, as msi-acrpull allowed) must
// still not hand it out: unset means the Azure clouds' registries only. The real binary, started with exactly the
// chart's arguments, serves a binding at an Azure registry and refuses the tenant's hosts, a name that ends in the
// suffix's letters but not at a label among them, before the proxy sees a single connection to them.
func TestControllerWithoutSuffixListSendsNoTokenToATenantsHost(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns, apps := fresh("nosuffix"), fresh("acrpull-nosuffix"), fresh("nosuffix-apps")
	const (
		azureRegistry = "example.azurecr.io"
		clientID      = "22222222-2222-2222-2222-222222222222"
	)
	// (A host that merely contains an Azure suffix before another domain is refused by the CRD already.)
	tenantHosts := []string{"registry.evil.example", "evilazurecr.io"}

	_, args := installChart(t, release, ns, "-f", valuesFile(t, "allowedACRServerSuffixes: []\n"))
	for _, a := range args {
		g.Expect(a).NotTo(HavePrefix("--allowed-acr-server-suffixes"), "the chart's empty list renders no flag")
	}

	// Every host answers like a registry that would exchange the token: only the controller's check stands between
	// the tenant and the token.
	cloud, environ := startFakeAzure(t)
	cloud.TrustIssuer(testenv.Issuer, env.SigningKey)
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AssignedToVM: true})
	for _, host := range append([]string{azureRegistry}, tenantHosts...) {
		cloud.AddRegistry(azurefake.Registry{Host: host})
		cloud.AddRoleAssignment(clientID, host, []string{"app"}, []string{"pull"})
	}
	ctl := startController(t, append(withTestListeners(args, "0"), "--kubeconfig="+serviceAccountKubeconfig(t, ns, "acrpull")), environ)

	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: apps}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "app"}})).To(Succeed())
	binding := func(name, server string) *acrv1beta2.AcrPullBinding {
		return &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: name}, Spec: acrv1beta2.AcrPullBindingSpec{
			ACR:                acrv1beta2.AcrConfiguration{Server: server, Scope: "repository:app:pull", Environment: acrv1beta2.AzureEnvironmentPublicCloud},
			Auth:               acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: clientID}},
			ServiceAccountName: "app"}}
	}
	var attacks []*acrv1beta2.AcrPullBinding
	for i, host := range tenantHosts {
		b := binding("tenant-"+string(rune('a'+i)), host)
		g.Expect(env.Client.Create(ctx, b)).To(Succeed())
		attacks = append(attacks, b)
	}
	g.Expect(env.Client.Create(ctx, binding("azure", azureRegistry))).To(Succeed())

	reason := func(g Gomega, name string) string {
		b := &acrv1beta2.AcrPullBinding{}
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: apps, Name: name}, b)).To(Succeed())
		if c := meta.FindStatusCondition(b.Status.Conditions, acrv1beta2.ConditionReady); c != nil {
			return string(c.Status) + "/" + c.Reason
		}
		return ""
	}
	g.Eventually(func(g Gomega) {
		g.Expect(ctl.running()).To(Succeed())
		// The Azure registry's binding shows the controller works in this configuration, so the refusals below are
		// its decision, not a broken start.
		g.Expect(reason(g, "azure")).To(Equal("True/" + acrv1beta2.ReasonTokenMinted))
		for _, b := range attacks {
			g.Expect(reason(g, b.Name)).To(Equal("False/"+acrv1beta2.ReasonServerNotAllowed), "binding naming %s", b.Spec.ACR.Server)
		}
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "controller log:\n%s", ctl.logs.String())

	g.Expect(cloud.HostRequests(azureRegistry)).To(BeNumerically(">", 0), "the proxy counts what reaches a registry")
	for _, b := range attacks {
		host := b.Spec.ACR.Server
		g.Expect(cloud.HostRequests(host)).To(BeZero(), "no connection, let alone a token, may reach %s", host)
		err := env.Client.Get(ctx, client.ObjectKey{Namespace: apps, Name: "acr-pull-" + b.Name}, &corev1.Secret{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "no secret for the binding naming %s (%v)", host, err)
	}
	g.Expect(ctl.logs.String()).NotTo(ContainSubstring("eyJ"), "no JWT in the controller's log")
}
