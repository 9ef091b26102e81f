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
	"testing"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/scheme"
)

// The static manifests install the way msi-acrpull's README says (`kubectl apply -f crd.yaml -f deploy.yaml`), into
// msi-acrpull's namespace, and their policies guard that namespace's controller.
func TestStaticManifestsApplyWithKubectl(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const ns = "msi-acrpull-system"
	g.Expect(trackInputs()).To(Succeed())
	dir := filepath.Join(testenv.ModuleRoot(), "deploy", "latest")
	kubectl := exec.Command(filepath.Join(env.AssetsDir, "kubectl"), "--kubeconfig", env.KubeconfigPath, "apply",
		"-f", filepath.Join(dir, "crd.yaml"), "-f", filepath.Join(dir, "deploy.yaml"))
	kubectl.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := kubectl.CombinedOutput()
	g.Expect(err).NotTo(HaveOccurred(), "kubectl apply: %s", out)

	d := &appsv1.Deployment{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "acrpull"}, d)).To(Succeed())
	g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--leader-election-namespace=" + ns))
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Name: "acrpull-secret-mutation"}, vap)).To(Succeed())
	g.Expect(vap.Spec.MatchConditions[0].Expression).To(ContainSubstring(`"system:serviceaccount:` + ns + `:acrpull"`))

	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acrpull"}}
	tr := &authenticationv1.TokenRequest{}
	g.Expect(env.Client.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	ctl, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() error {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "acr-pull-probe-"}, Type: corev1.SecretTypeOpaque}
		return ctl.Create(ctx, s)
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgType)))
}

// The controller's pod, as the chart templates it, passes the "restricted" Pod Security Standard the chart's
// Namespace enforces.
func TestPodTemplateMeetsRestrictedPodSecurity(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	name := fresh("pss-restricted")
	objs := mustTemplate(t, "--set", "namespace="+name, "--set", "createNamespace=true")
	ns := mustFind[corev1.Namespace](t, objs, "Namespace", name)
	g.Expect(env.Client.Create(ctx, ns)).To(Succeed())
	g.Expect(env.Client.Create(ctx, mustFind[corev1.ServiceAccount](t, objs, "ServiceAccount", "acrpull"))).To(Succeed())
	d := mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull")

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "acrpull"}, Spec: d.Spec.Template.Spec}
	g.Expect(env.Client.Create(ctx, pod)).To(Succeed())

	// The control: the same pod made privileged is refused, so the namespace really enforces the standard.
	bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "privileged"}, Spec: *d.Spec.Template.Spec.DeepCopy()}
	bad.Spec.Containers[0].SecurityContext.Privileged = ptrTo(true)
	bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptrTo(true)
	g.Expect(env.Client.Create(ctx, bad)).To(MatchError(ContainSubstring(`violates PodSecurity "restricted`)))
}

// The README's install path, against a real apiserver: helm install (helm checks kubeVersion against the server),
// upgrade with a new audience (the policies are re-rendered with it), uninstall (everything but the CRDs goes).
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const release, ns = "acrpull-helm", "acrpull-helm"
	// The test apiserver already has the CRDs, not owned by any release: helm would refuse to adopt them.
	base := []string{"--kubeconfig", env.KubeconfigPath, "--namespace", ns, "--set", "namespace=" + ns, "--set", "crds.install=false"}
	out, err := helm(append([]string{"install", release, chartDir, "--create-namespace"}, base...)...)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out).To(ContainSubstring("runs in namespace " + ns))

	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Name: release + "-token-request"}, policy)).To(Succeed())
	g.Expect(policy.Spec.MatchConditions[0].Expression).To(ContainSubstring(`"system:serviceaccount:` + ns + `:acrpull"`))
	g.Expect(policy.Spec.Validations[0].Expression).To(ContainSubstring(`"api://AzureCRTokenExchange"`))

	_, err = helm(append([]string{"upgrade", release, chartDir, "--set", "tokenAudience=api://OtherExchange"}, base...)...)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Name: release + "-token-request"}, policy)).To(Succeed())
	g.Expect(policy.Spec.Validations[0].Expression).To(ContainSubstring(`"api://OtherExchange"`))
	d := &appsv1.Deployment{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "acrpull"}, d)).To(Succeed())
	g.Expect(d.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--service-account-token-audience=api://OtherExchange"))

	_, err = helm("uninstall", release, "--kubeconfig", env.KubeconfigPath, "--namespace", ns, "--wait", "--timeout", "30s")
	g.Expect(err).NotTo(HaveOccurred())
	err = env.Client.Get(ctx, types.NamespacedName{Name: release + "-token-request"}, policy)
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "policy left after uninstall: %v", err)
	err = env.Client.Get(ctx, types.NamespacedName{Name: release + "-controller"}, &rbacv1.ClusterRole{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ClusterRole left after uninstall: %v", err)
}
