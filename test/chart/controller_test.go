/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azurefake"
	"github.com/acrpull/acrpull/internal/testenv"
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
		tenantID     = "72f988bf-86f1-41af-91ab-2d7cd011db47"
		clientID     = "11111111-1111-1111-1111-111111111111"
	)

	out, err := template(release, "--set", "namespace="+ns, "--set", "createNamespace=true", "--set", "crds.install=false")
	g.Expect(err).NotTo(HaveOccurred())
	objs := mustDecode(t, out)
	for _, obj := range objs {
		g.Expect(env.Client.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}
	args := mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull").Spec.Template.Spec.Containers[0].Args

	cloud, err := azurefake.New(azurefake.Options{})
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cloud.Start()).To(Succeed())
	t.Cleanup(cloud.Close)
	cloud.TrustIssuer(testenv.Issuer, env.SigningKey)
	cloud.AddRegistry(azurefake.Registry{Host: registryHost})
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AssignedToVM: true})
	cloud.AddRoleAssignment(clientID, registryHost, []string{"app"}, []string{"pull"})
	cloud.AddFederatedCredential(clientID, azurefake.FederatedCredential{Issuer: testenv.Issuer,
		Subject: "system:serviceaccount:" + apps + ":federated", Audiences: []string{audience}})
	caFile := filepath.Join(t.TempDir(), "fake-azure-ca.pem")
	g.Expect(os.WriteFile(caFile, cloud.CACertPEM(), 0o600)).To(Succeed())

	// A kubeconfig holding the chart's service account's token, as the pod would mount it.
	tr := &authenticationv1.TokenRequest{}
	g.Expect(env.Client.SubResource("token").Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acrpull"}}, tr)).To(Succeed())
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	kc.AuthInfos["acrpull"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["acrpull"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "acrpull"}
	kc.CurrentContext = "acrpull"
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	g.Expect(clientcmd.WriteToFile(*kc, kubeconfig)).To(Succeed())

	// The chart's arguments, except the listeners: several test processes may share this machine's ports.
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--metrics-bind-address="):
			args[i] = "--metrics-bind-address=0"
		case strings.HasPrefix(a, "--health-probe-bind-address="):
			args[i] = "--health-probe-bind-address=127.0.0.1:0"
		}
	}
	var logs testenv.Output
	cmd := exec.Command(programBinary(t, "acrpull"), append(args, "--kubeconfig="+kubeconfig)...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "HTTPS_PROXY=" + cloud.ProxyURL().String(), "HTTP_PROXY=" + cloud.ProxyURL().String(),
		"NO_PROXY=127.0.0.1,localhost", "SSL_CERT_FILE=" + caFile}
	cmd.Stdout, cmd.Stderr = &logs, &logs
	g.Expect(cmd.Start()).To(Succeed())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("controller log:\n%s", logs.String())
		}
	})
	alive := func(g Gomega) {
		select {
		case err := <-exited:
			exited <- err
			g.Expect(err).NotTo(HaveOccurred(), "the controller exited")
		default:
		}
	}

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
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "controller log:\n%s", logs.String())

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
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "controller log:\n%s", logs.String())

	// Not one request was refused along the way, by RBAC or by a policy.
	g.Expect(regexp.MustCompile(`(?i)forbidden|denied request|ValidatingAdmissionPolicy`).FindAllString(logs.String(), -1)).
		To(BeEmpty(), "controller log:\n%s", logs.String())
}
