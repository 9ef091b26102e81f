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

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

const (
	msgCrossNamespace = "spec.clientPassword.namespace must be empty or the AzureIdentity's own namespace"
	msgADEndpoint     = "spec.adEndpoint must be an https URL whose host is an Azure cloud's Entra ID authority or in the chart value allowedAuthorityHosts"
	msgEntraAuthority = "spec.acr.cloudConfig.entraAuthorityHost must be an https URL whose host is an Azure cloud's Entra ID authority or in the chart value allowedAuthorityHosts"
)

// The credential-destination policies render by default for bindings, with the node agent for identities, and the
// cross-namespace one not when podIdentity.allowCrossNamespaceSecrets restores upstream's behaviour.
func TestCredentialDestinationPoliciesRender(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t)
	g.Expect(find(objs, "ValidatingAdmissionPolicy", releaseName+"-binding-authority-host")).NotTo(BeNil())
	g.Expect(find(objs, "ValidatingAdmissionPolicy", releaseName+"-identity-authority-host")).To(BeNil())
	g.Expect(find(objs, "ValidatingAdmissionPolicy", releaseName+"-identity-secret-namespace")).To(BeNil())
	objs = mustTemplate(t, "--set", "podIdentity.enabled=true")
	g.Expect(find(objs, "ValidatingAdmissionPolicy", releaseName+"-identity-authority-host")).NotTo(BeNil())
	g.Expect(find(objs, "ValidatingAdmissionPolicyBinding", releaseName+"-identity-secret-namespace")).NotTo(BeNil())
	objs = mustTemplate(t, "--set", "podIdentity.enabled=true", "--set", "podIdentity.allowCrossNamespaceSecrets=true")
	g.Expect(find(objs, "ValidatingAdmissionPolicy", releaseName+"-identity-secret-namespace")).To(BeNil())
}

// Attack, on a real apiserver with the chart's rendered policies: a tenant with edit rights in its own namespace
// writes an AzureIdentity naming another namespace's Secret, or an authority host of its own in an AzureIdentity
// (spec.adEndpoint) or an AirgappedCloud AcrPullBinding (entraAuthorityHost). Each is refused, by CREATE and by
// UPDATE; the same objects naming their own namespace, a known cloud or an allowed host are admitted.
func TestCredentialDestinationPoliciesRefuseTenants(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, apps := fresh("destination-test"), fresh("destination-apps")
	label := map[string]string{"destination-test": release}
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: apps, Labels: label}})).To(Succeed())
	out, err := template(release, "--set", "podIdentity.enabled=true",
		"--set", "allowedAuthorityHosts={login.airgap.example,https://login.ported.example:8443/}",
		"--show-only", "templates/authority-host-policy.yaml", "--show-only", "templates/nmi-secret-namespace-policy.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	objs := mustDecode(t, out)
	g.Expect(objs).To(HaveLen(6))
	for _, obj := range objs {
		if obj.GetKind() == "ValidatingAdmissionPolicyBinding" {
			// Only this test's namespace: other tests on this apiserver write identities and bindings of their own.
			g.Expect(unstructured.SetNestedStringMap(obj.Object, label, "spec", "matchResources", "namespaceSelector", "matchLabels")).To(Succeed())
		}
		g.Expect(env.Client.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
	}
	tenant := tenantClient(t, apps)

	n := 0
	identity := func(spec aadv1.AzureIdentitySpec) *aadv1.AzureIdentity {
		n++
		if spec.ClientID == "" {
			spec.ClientID = "00000000-0000-0000-0000-000000000001"
		}
		return &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: fmt.Sprintf("id-%d", n)}, Spec: spec}
	}
	withSecret := func(namespace string) aadv1.AzureIdentitySpec {
		return aadv1.AzureIdentitySpec{Type: aadv1.ServicePrincipal, ClientID: "00000000-0000-0000-0000-000000000002",
			TenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", ClientPassword: corev1.SecretReference{Name: "sp", Namespace: namespace}}
	}
	atAuthority := func(authority string) aadv1.AzureIdentitySpec {
		return aadv1.AzureIdentitySpec{ClientID: "00000000-0000-0000-0000-000000000003", ADEndpoint: authority}
	}
	binding := func(authority string) *acrv1beta2.AcrPullBinding {
		n++
		return &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: fmt.Sprintf("binding-%d", n)},
			Spec: acrv1beta2.AcrPullBindingSpec{
				ACR: acrv1beta2.AcrConfiguration{Server: "example.azurecr.io", Scope: "repository:app:pull",
					Environment: acrv1beta2.AzureEnvironmentAirgappedCloud,
					CloudConfig: &acrv1beta2.AirgappedCloudConfiguration{EntraAuthorityHost: authority, ResourceManagerAudience: "https://management.airgap.example/"}},
				Auth:               acrv1beta2.AuthenticationMethod{WorkloadIdentity: &acrv1beta2.WorkloadIdentityAuth{ServiceAccountName: "app"}},
				ServiceAccountName: "app",
			}}
	}
	// Policies take effect a moment after they are created: fresh objects until one is refused.
	g.Eventually(func() error { return tenant.Create(ctx, identity(withSecret("kube-system"))) }).
		WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgCrossNamespace)))
	g.Eventually(func() error { return tenant.Create(ctx, identity(atAuthority("https://login.attacker.example/"))) }).
		WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgADEndpoint)))
	g.Eventually(func() error { return tenant.Create(ctx, binding("https://login.attacker.example/")) }).
		WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgEntraAuthority)))

	for name, tc := range map[string]struct {
		obj     client.Object
		refused string // "" for admitted
	}{
		"secret in another namespace":       {identity(withSecret("victims")), msgCrossNamespace},
		"secret in its own namespace":       {obj: identity(withSecret(apps))},
		"secret without a namespace":        {obj: identity(withSecret(""))},
		"attacker's adEndpoint":             {identity(atAuthority("https://login.attacker.example/")), "; not login.attacker.example"},
		"attacker behind user information":  {identity(atAuthority("https://login.microsoftonline.com@login.attacker.example/")), msgADEndpoint},
		"known host as a subdomain":         {identity(atAuthority("https://login.microsoftonline.com.attacker.example/")), msgADEndpoint},
		"plain http known host":             {identity(atAuthority("http://login.microsoftonline.com/")), msgADEndpoint},
		"allowed host on another port":      {identity(atAuthority("https://login.ported.example/")), msgADEndpoint},
		"not a URL":                         {identity(atAuthority("login.microsoftonline.com")), msgADEndpoint},
		"US government, upper case":         {obj: identity(atAuthority("https://LOGIN.MicrosoftOnline.US/"))},
		"allowed host with its port 443":    {obj: identity(atAuthority("https://login.airgap.example:443/"))},
		"allowed host and port":             {obj: identity(atAuthority("https://login.ported.example:8443/"))},
		"no adEndpoint":                     {obj: identity(atAuthority(""))},
		"binding at the attacker's host":    {binding("https://login.attacker.example/"), msgEntraAuthority},
		"binding at an attacker's port":     {binding("https://login.airgap.example:444/"), msgEntraAuthority},
		"binding at the allowed host":       {obj: binding("https://login.airgap.example/")},
		"binding at the China cloud's host": {obj: binding("https://login.chinacloudapi.cn/")},
	} {
		err := tenant.Create(ctx, tc.obj)
		if tc.refused == "" {
			// Other tests install the whole chart, whose policies (with their own allowedAuthorityHosts) bind every
			// namespace: what is asked here is that this release's policies admit it.
			if err != nil {
				g.Expect(err.Error()).NotTo(ContainSubstring("'"+release+"-"), name)
			}
			continue
		}
		g.Expect(err).To(MatchError(ContainSubstring(tc.refused)), name)
	}

	// UPDATE: an admitted identity or binding cannot be turned toward another namespace or host afterwards.
	id := identity(withSecret(apps))
	g.Expect(tenant.Create(ctx, id)).To(Succeed())
	id.Spec.ClientPassword.Namespace = "victims"
	g.Expect(tenant.Update(ctx, id)).To(MatchError(ContainSubstring(msgCrossNamespace)))
	id = identity(atAuthority("https://login.microsoftonline.com/"))
	g.Expect(tenant.Create(ctx, id)).To(Succeed())
	id.Spec.ADEndpoint = "https://login.attacker.example/"
	g.Expect(tenant.Update(ctx, id)).To(MatchError(ContainSubstring(msgADEndpoint)))
	b := binding("https://login.chinacloudapi.cn/")
	g.Expect(tenant.Create(ctx, b)).To(Succeed())
	b.Spec.ACR.CloudConfig.EntraAuthorityHost = "https://login.attacker.example/"
	g.Expect(tenant.Update(ctx, b)).To(MatchError(ContainSubstring(msgEntraAuthority)))
}
