/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/identityallowlist"
	"github.com/acrpull/acrpull/internal/scheme"
)

const (
	teamAClientID   = "aaaaaaaa-0000-0000-0000-00000000000a"
	teamAResourceID = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/team-a"
	teamBClientID   = "bbbbbbbb-0000-0000-0000-00000000000b"
	sharedClientID  = "cccccccc-0000-0000-0000-00000000000c"
	// defaultClientID is the v1beta1 default identity (MANAGED_IDENTITY_CLIENT_ID), given to no namespace.
	defaultClientID = "dddddddd-0000-0000-0000-00000000000d"
	msgIdentity     = "is not allowed in namespace"
)

func identityPolicyValues(teamA, teamB string) string {
	return fmt.Sprintf(`
v1beta1: {managedIdentityClientID: %s}
managedIdentityPolicy:
  enabled: true
  rules:
    - name: team-a
      namespaces: [%s]
      clientIDs: [%s]
      resourceIDs: [%s]
    - name: team-b
      namespaces: [%s]
      clientIDs: [%s]
    - name: everyone
      namespaces: ["*"]
      clientIDs: [%s]
`, defaultClientID, teamA, strings.ToUpper(teamAClientID), strings.ToUpper(teamAResourceID), teamB, teamBClientID, sharedClientID)
}

// Off by default; on, the controller gets the same ConfigMap as its --managed-identity-allow-list.
func TestIdentityPolicyRendersOnlyWhenEnabledAndFeedsTheController(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t)
	g.Expect(find(objs, "ValidatingAdmissionPolicy", releaseName+"-managed-identity")).To(BeNil())
	g.Expect(find(objs, "ConfigMap", releaseName+"-managed-identity-allow-list")).To(BeNil())

	objs = mustTemplate(t, "-f", valuesFile(t, identityPolicyValues("team-a", "team-b")))
	g.Expect(find(objs, "ValidatingAdmissionPolicy", releaseName+"-managed-identity")).NotTo(BeNil())
	cm := mustFind[corev1.ConfigMap](t, objs, "ConfigMap", releaseName+"-managed-identity-allow-list")
	g.Expect(cm.Namespace).To(Equal(chartNamespace))
	d := mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull")
	pod := d.Spec.Template.Spec
	g.Expect(pod.Containers[0].Args).To(ContainElement("--managed-identity-allow-list=/etc/acrpull/managed-identity-allow-list"))
	g.Expect(pod.Containers[0].VolumeMounts).To(ContainElement(corev1.VolumeMount{Name: "managed-identity-allow-list",
		MountPath: "/etc/acrpull/managed-identity-allow-list", ReadOnly: true}))
	g.Expect(pod.Volumes).To(ContainElement(HaveField("VolumeSource.ConfigMap.Name", cm.Name)))
	allowList, err := identityallowlist.Parse(cm.Data)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(allowList.Allows("team-a", teamAClientID, "")).To(BeTrue())
	g.Expect(allowList.Allows("team-b", teamAClientID, "")).To(BeFalse())
}

// Attack, on a real apiserver with the chart's rendered policy and params: a tenant of namespace A names a managed
// identity the administrator gave only namespace B (or nobody). Refused; what the allow-list gives A is admitted,
// IDs compared case-insensitively, and the controller's parse of the same ConfigMap decides every case alike. With
// the ConfigMap deleted, every binding naming a managed identity is refused (fail closed).
func TestIdentityPolicyRefusesIdentitiesOfOtherNamespaces(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns := fresh("identity-test"), fresh("identity-system")
	teamA, teamB := fresh("identity-team-a"), fresh("identity-team-b")
	label := map[string]string{"identity-test": release}
	for _, n := range []string{ns, teamA, teamB} {
		g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n, Labels: label}})).To(Succeed())
	}
	out, err := template(release, "--set", "namespace="+ns, "-f", valuesFile(t, identityPolicyValues(teamA, teamB)),
		"--show-only", "templates/managed-identity-policy.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	objs := mustDecode(t, out)
	g.Expect(objs).To(HaveLen(3))
	var configMap *unstructured.Unstructured
	for _, obj := range objs {
		switch obj.GetKind() {
		case "ValidatingAdmissionPolicyBinding":
			// Only this test's namespaces: other tests on this apiserver create bindings with identities of their own.
			g.Expect(unstructured.SetNestedStringMap(obj.Object, label, "spec", "matchResources", "namespaceSelector", "matchLabels")).To(Succeed())
		case "ConfigMap":
			configMap = obj
		}
		g.Expect(env.Client.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), obj) })
	}
	data, _, _ := unstructured.NestedStringMap(configMap.Object, "data")
	controllerView, err := identityallowlist.Parse(data)
	g.Expect(err).NotTo(HaveOccurred())

	tenant := tenantClient(t, teamA, teamB)
	n := 0
	v1beta2 := func(namespace string, mi *acrv1beta2.ManagedIdentityAuth) *acrv1beta2.AcrPullBinding {
		n++
		auth := acrv1beta2.AuthenticationMethod{ManagedIdentity: mi}
		if mi == nil {
			auth = acrv1beta2.AuthenticationMethod{WorkloadIdentity: &acrv1beta2.WorkloadIdentityAuth{ServiceAccountName: "app"}}
		}
		return &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("binding-%d", n)},
			Spec: acrv1beta2.AcrPullBindingSpec{ServiceAccountName: "app", Auth: auth,
				ACR: acrv1beta2.AcrConfiguration{Server: "example.azurecr.io", Scope: "repository:app:pull", Environment: acrv1beta2.AzureEnvironmentPublicCloud}}}
	}
	v1beta1 := func(namespace, clientID, resourceID string) *acrv1beta1.AcrPullBinding {
		n++
		return &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: fmt.Sprintf("binding-%d", n)},
			Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: "example.azurecr.io", ManagedIdentityClientID: clientID, ManagedIdentityResourceID: resourceID}}
	}
	byClient := func(id string) *acrv1beta2.ManagedIdentityAuth { return &acrv1beta2.ManagedIdentityAuth{ClientID: id} }
	byResource := func(id string) *acrv1beta2.ManagedIdentityAuth {
		return &acrv1beta2.ManagedIdentityAuth{ResourceID: id}
	}

	// The policy takes effect a moment after it is created: fresh bindings until one is refused.
	g.Eventually(func() error {
		return tenant.Create(ctx, v1beta2(teamA, byClient(teamBClientID)))
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgIdentity)))

	otherResourceID := strings.Replace(teamAResourceID, "team-a", "team-b", 1)
	for _, tc := range []struct {
		name               string
		binding            client.Object
		clientID, resource string // the identity the controller would use
		admitted           bool
	}{
		{"A names B's identity", v1beta2(teamA, byClient(teamBClientID)), teamBClientID, "", false},
		{"A names its own", v1beta2(teamA, byClient(teamAClientID)), teamAClientID, "", true},
		{"A names its own, upper-case", v1beta2(teamA, byClient(strings.ToUpper(teamAClientID))), teamAClientID, "", true},
		{"A names its own by resource ID, other case", v1beta2(teamA, byResource(strings.ToLower(teamAResourceID))), "", teamAResourceID, true},
		{"A names another resource ID", v1beta2(teamA, byResource(otherResourceID)), "", otherResourceID, false},
		{"B names its own", v1beta2(teamB, byClient(teamBClientID)), teamBClientID, "", true},
		{"B names A's", v1beta2(teamB, byClient(teamAClientID)), teamAClientID, "", false},
		{"B names A's by resource ID", v1beta2(teamB, byResource(teamAResourceID)), "", teamAResourceID, false},
		{"anyone names the shared one", v1beta2(teamB, byClient(sharedClientID)), sharedClientID, "", true},
		{"an identity given to nobody", v1beta2(teamA, byClient(defaultClientID)), defaultClientID, "", false},
		{"workload identity is not concerned", v1beta2(teamA, nil), "", "", true},
		{"v1beta1 names B's identity in A", v1beta1(teamA, teamBClientID, ""), teamBClientID, "", false},
		{"v1beta1 names its own", v1beta1(teamA, teamAClientID, ""), teamAClientID, "", true},
		{"v1beta1 names its own by resource ID", v1beta1(teamA, "", teamAResourceID), "", teamAResourceID, true},
		{"v1beta1 naming none uses the default", v1beta1(teamA, "", ""), defaultClientID, "", false},
	} {
		err := tenant.Create(ctx, tc.binding)
		if tc.admitted {
			g.Expect(err).NotTo(HaveOccurred(), tc.name)
		} else {
			g.Expect(err).To(MatchError(ContainSubstring(msgIdentity)), tc.name)
			g.Expect(err).To(MatchError(ContainSubstring(tc.binding.GetNamespace())), tc.name)
			g.Expect(err).To(MatchError(ContainSubstring(strings.ToLower(tc.clientID+tc.resource))), tc.name)
		}
		if tc.clientID != "" || tc.resource != "" {
			g.Expect(controllerView.Allows(tc.binding.GetNamespace(), tc.clientID, tc.resource)).To(Equal(tc.admitted),
				"the controller decides %q as admission does", tc.name)
		}
	}

	// Updates: changing the identity to one the namespace is not given is refused; updates that leave the spec alone
	// (finalizers, labels) are not checked, so a binding admitted before a tightening stays deletable.
	admitted := v1beta2(teamA, byClient(teamAClientID))
	g.Expect(tenant.Create(ctx, admitted)).To(Succeed())
	admitted.Spec.Auth.ManagedIdentity.ClientID = teamBClientID
	g.Expect(tenant.Update(ctx, admitted)).To(MatchError(ContainSubstring(msgIdentity)))
	g.Expect(tenant.Get(ctx, client.ObjectKeyFromObject(admitted), admitted)).To(Succeed())
	g.Expect(unstructured.SetNestedField(configMap.Object, "", "data", "team-a.clientIDs")).To(Succeed())
	g.Expect(env.Client.Update(ctx, configMap)).To(Succeed())
	g.Eventually(func() error {
		return tenant.Create(ctx, v1beta2(teamA, byClient(teamAClientID)))
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgIdentity)), "the tightened allow-list applies")
	admitted.Labels = map[string]string{"touched": "yes"}
	admitted.Finalizers = []string{"example.com/hold"}
	g.Expect(tenant.Update(ctx, admitted)).To(Succeed())
	admitted.Finalizers = nil
	g.Expect(tenant.Update(ctx, admitted)).To(Succeed())

	// Fail closed: without the ConfigMap, nothing naming a managed identity is admitted.
	g.Expect(env.Client.Delete(ctx, configMap)).To(Succeed())
	g.Eventually(func() error {
		return tenant.Create(ctx, v1beta2(teamB, byClient(teamBClientID)))
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring("no params found")))
	for _, b := range []client.Object{v1beta2(teamA, byClient(teamAClientID)), v1beta2(teamB, byClient(sharedClientID)),
		v1beta1(teamA, teamAClientID, ""), v1beta1(teamB, "", "")} {
		err := tenant.Create(ctx, b)
		g.Expect(apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "%v", err)
	}
}

// tenantClient is a client acting as a user who may manage AcrPullBindings of both groups and AzureIdentities in namespaces, and nothing
// more.
func tenantClient(t *testing.T, namespaces ...string) client.Client {
	t.Helper()
	ctx := context.Background()
	user := fresh("tenant")
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: user}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{acrv1beta2.GroupVersion.Group, acrv1beta1.GroupVersion.Group},
		Resources: []string{"acrpullbindings"}, Verbs: []string{"get", "list", "create", "update", "patch", "delete"}}, {
		APIGroups: []string{aadGroup}, Resources: []string{"azureidentities"}, Verbs: []string{"get", "list", "create", "update", "patch", "delete"}}}}
	if err := env.Client.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), role) })
	for _, ns := range namespaces {
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: user},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}}
		if err := env.Client.Create(ctx, rb); err != nil {
			t.Fatal(err)
		}
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		t.Fatal(err)
	}
	// RBAC takes effect a moment after it is written.
	NewWithT(t).Eventually(func() error {
		return c.List(ctx, &acrv1beta2.AcrPullBindingList{}, client.InNamespace(namespaces[0]))
	}).WithTimeout(activationWindow).Should(Succeed())
	return c
}
