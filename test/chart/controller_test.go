/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// The real controller binary, started with the chart's arguments and authenticated as the chart's service account
// (so bound by exactly the chart's RBAC and admission policies), does its whole job without a single denial: takes
// the leader Lease, mints v1beta2 (managed and workload identity) and v1beta1 secrets, attaches them, and on
// deletion detaches and deletes them and releases the bindings.
func TestControllerWorksUnderTheChartsPolicies(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns, apps := fresh("e2e"), fresh("acrpull-e2e"), fresh("e2e-apps")
	const (
		registryHost = "example.azurecr.io"
		clientID     = "11111111-1111-1111-1111-111111111111"
	)

	_, args := installChart(t, release, ns)

	cloud, environ := startFakeAzure(t)
	cloud.TrustIssuer(testenv.Issuer, env.SigningKey)
	cloud.AddRegistry(azurefake.Registry{Host: registryHost})
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AssignedToVM: true})
	cloud.AddRoleAssignment(clientID, registryHost, []string{"app"}, []string{"pull"})
	cloud.AddFederatedCredential(clientID, azurefake.FederatedCredential{Issuer: testenv.Issuer,
		Subject: "system:serviceaccount:" + apps + ":federated", Audiences: []string{audience}})

	// The chart's service account's token, as the pod would mount it.
	kubeconfig := serviceAccountKubeconfig(t, ns, "acrpull")
	ctl := startController(t, append(withTestListeners(args, "0"), "--kubeconfig="+kubeconfig), environ)
	alive := func(g Gomega) { g.Expect(ctl.running()).To(Succeed()) }

	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: apps}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "app"},
		ImagePullSecrets: []corev1.LocalObjectReference{{Name: "registry-creds"}}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "federated",
		Annotations: map[string]string{"azure.workload.identity/client-id": clientID, "azure.workload.identity/tenant-id": tenantID}}})).To(Succeed())
	acr := acrv1beta2.AcrConfiguration{Server: registryHost, Scope: "repository:app:pull", Environment: acrv1beta2.AzureEnvironmentPublicCloud}
	bindings := []client.Object{
		&acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "mi"}, Spec: acrv1beta2.AcrPullBindingSpec{
			ACR: acr, Auth: acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: clientID}},
			ServiceAccountName: "app"}},
		&acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "wi"}, Spec: acrv1beta2.AcrPullBindingSpec{
			ACR: acr, Auth: acrv1beta2.AuthenticationMethod{WorkloadIdentity: &acrv1beta2.WorkloadIdentityAuth{ServiceAccountName: "federated"}},
			ServiceAccountName: "app"}},
		&acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "legacy"}, Spec: acrv1beta1.AcrPullBindingSpec{
			AcrServer: registryHost, Scope: "repository:app:pull", ManagedIdentityClientID: clientID, ServiceAccountName: "app"}},
	}
	secrets := []string{"acr-pull-mi", "acr-pull-wi", "legacy-msi-acrpull-secret"}
	for _, b := range bindings {
		g.Expect(env.Client.Create(ctx, b)).To(Succeed())
	}

	g.Eventually(func(g Gomega) {
		alive(g)
		for _, name := range secrets {
			s := &corev1.Secret{}
			g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: apps, Name: name}, s)).To(Succeed())
			g.Expect(s.Type).To(Equal(corev1.SecretTypeDockerConfigJson))
		}
		g.Expect(pullSecretNames(t, env.Client, apps, "app")).To(ConsistOf(append([]string{"registry-creds"}, secrets...)))
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "controller log:\n%s", ctl.logs.String())

	lease := &coordinationv1.Lease{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "aks.azure.com"}, lease)).To(Succeed())
	g.Expect(lease.Spec.HolderIdentity).To(HaveValue(Not(BeEmpty())))

	for _, b := range bindings {
		g.Expect(env.Client.Delete(ctx, b)).To(Succeed())
	}
	g.Eventually(func(g Gomega) {
		alive(g)
		for _, b := range bindings {
			err := env.Client.Get(ctx, client.ObjectKeyFromObject(b), b)
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "binding %s still there (%v)", b.GetName(), err)
		}
		for _, name := range secrets {
			err := env.Client.Get(ctx, client.ObjectKey{Namespace: apps, Name: name}, &corev1.Secret{})
			g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "secret %s still there (%v)", name, err)
		}
		g.Expect(pullSecretNames(t, env.Client, apps, "app")).To(Equal([]string{"registry-creds"}))
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "controller log:\n%s", ctl.logs.String())

	// Not one request was refused along the way, by RBAC or by a policy.
	g.Expect(regexp.MustCompile(`(?i)forbidden|denied request|ValidatingAdmissionPolicy`).FindAllString(ctl.logs.String(), -1)).
		To(BeEmpty(), "controller log:\n%s", ctl.logs.String())
}
