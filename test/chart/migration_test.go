/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

// migrationBlock is the shell block of config/helm/README.md that follows the marker
// "<!-- migration-from-msi-acrpull: <step> -->", without its indentation.
func migrationBlock(t *testing.T, step string) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "config", "helm", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?s)<!-- migration-from-msi-acrpull: " + regexp.QuoteMeta(step) + " -->\\s*```bash\n(.*?)\n\\s*```")
	m := re.FindSubmatch(readme)
	if m == nil {
		t.Fatalf("config/helm/README.md has no block %q", step)
	}
	var lines []string
	for _, l := range strings.Split(string(m[1]), "\n") {
		lines = append(lines, strings.TrimPrefix(l, "   "))
	}
	return strings.Join(lines, "\n")
}

// runShell runs script with bash from the module root, kubectl and helm of the test platform on the path, acting on
// the test apiserver.
func runShell(t *testing.T, script string) string {
	t.Helper()
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = testenv.ModuleRoot()
	cmd.Env = append(os.Environ(), "PATH="+env.AssetsDir+string(os.PathListSeparator)+os.Getenv("PATH"),
		"KUBECONFIG="+env.KubeconfigPath, "HOME="+t.TempDir(),
		"HELM_CACHE_HOME="+filepath.Join(helmHome, "cache"), "HELM_CONFIG_HOME="+filepath.Join(helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(helmHome, "data"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s\n%v:\n%s", script, err, out.String())
	}
	return out.String()
}

// oldSecret is a pull secret as msi-acrpull leaves it: its name, label, token annotations, the binding as controlling
// owner; the token is due for refresh (msi-acrpull has been stopped for a while).
func oldSecret(ns, name string, owner client.Object, apiVersion string, now time.Time) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
			Labels: map[string]string{acrpullbinding.BindingLabel: owner.GetName()},
			Annotations: map[string]string{
				acrpullbinding.ExpiryAnnotation:  now.Add(10 * time.Minute).UTC().Format(time.RFC3339),
				acrpullbinding.RefreshAnnotation: now.Add(-170 * time.Minute).UTC().Format(time.RFC3339),
				acrpullbinding.InputsAnnotation:  "written-by-msi-acrpull",
			},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: apiVersion, Kind: "AcrPullBinding", Name: owner.GetName(),
				UID: owner.GetUID(), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{"example.azurecr.io":{"username":"00000000-0000-0000-0000-000000000000","password":"msi-acrpull-token"}}}`)},
	}
}

// migration is a cluster as msi-acrpull leaves it, for one test: bindings of both APIs in the namespace apps, each
// with the secret msi-acrpull wrote for it attached to its target service account, and the two CRDs.
type migration struct {
	t         *testing.T
	apps      string
	crdClient client.Client
	crdUIDs   map[string]types.UID
	bindings  []servedBinding
	secrets   map[string]types.UID
}

// servedBinding is a binding with the name of its secret and the service account that lists it.
type servedBinding struct {
	binding        client.Object
	secret, target string
}

const (
	migrationRegistry = "example.azurecr.io"
	migrationClientID = "22222222-2222-2222-2222-222222222222"
)

var migrationCRDs = []string{"acrpullbindings.msi-acrpull.microsoft.com", "acrpullbindings.acrpull.microsoft.com"}

// newMigration records the CRDs' UIDs, and gives them the helm ownership owner (release and namespace), or none when
// owner is nil, as msi-acrpull's chart or its `kubectl apply` leaves them (another test may have adopted them).
func newMigration(t *testing.T, apps string, owner *[2]string) *migration {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	crdClient, err := client.New(env.Config, client.Options{Scheme: crdScheme()})
	g.Expect(err).NotTo(HaveOccurred())
	m := &migration{t: t, apps: apps, crdClient: crdClient, crdUIDs: map[string]types.UID{}, secrets: map[string]types.UID{}}
	for _, name := range migrationCRDs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(crdClient.Get(ctx, client.ObjectKey{Name: name}, crd)).To(Succeed())
		patch := client.MergeFrom(crd.DeepCopy())
		delete(crd.Labels, "app.kubernetes.io/managed-by")
		delete(crd.Annotations, "meta.helm.sh/release-name")
		delete(crd.Annotations, "meta.helm.sh/release-namespace")
		if owner != nil {
			metav1.SetMetaDataLabel(&crd.ObjectMeta, "app.kubernetes.io/managed-by", "Helm")
			metav1.SetMetaDataAnnotation(&crd.ObjectMeta, "meta.helm.sh/release-name", owner[0])
			metav1.SetMetaDataAnnotation(&crd.ObjectMeta, "meta.helm.sh/release-namespace", owner[1])
		}
		g.Expect(crdClient.Patch(ctx, crd, patch)).To(Succeed())
		m.crdUIDs[name] = crd.UID
	}
	return m
}

// createBindings creates a v1beta1 and a v1beta2 binding with msi-acrpull's finalizer, and their secrets as
// msi-acrpull wrote them, attached to their service accounts.
func (m *migration) createBindings() {
	m.t.Helper()
	g := NewWithT(m.t)
	ctx := context.Background()
	now := time.Now()
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: m.apps}})).To(Succeed())
	legacy := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: m.apps, Name: "legacy",
		Finalizers: []string{acrpullbinding.Finalizer}},
		Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: migrationRegistry, Scope: "repository:app:pull", ManagedIdentityClientID: migrationClientID}}
	current := &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: m.apps, Name: "current",
		Finalizers: []string{acrpullbinding.Finalizer}},
		Spec: acrv1beta2.AcrPullBindingSpec{ACR: acrv1beta2.AcrConfiguration{Server: migrationRegistry, Scope: "repository:app:pull",
			Environment: acrv1beta2.AzureEnvironmentPublicCloud},
			Auth: acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: migrationClientID}}, ServiceAccountName: "app"}}
	g.Expect(env.Client.Create(ctx, legacy)).To(Succeed())
	g.Expect(env.Client.Create(ctx, current)).To(Succeed())
	m.bindings = []servedBinding{{legacy, "legacy-msi-acrpull-secret", "default"}, {current, "acr-pull-current", "app"}}
	for _, b := range m.bindings {
		apiVersion := acrv1beta2.GroupVersion.String()
		if b.binding == legacy {
			apiVersion = acrv1beta1.GroupVersion.String()
		}
		s := oldSecret(m.apps, b.secret, b.binding, apiVersion, now)
		g.Expect(env.Client.Create(ctx, s)).To(Succeed())
		m.secrets[b.secret] = s.UID
		g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: m.apps, Name: b.target},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: b.secret}}})).To(Succeed())
	}
}

// tokens returns a digest of each secret's .dockerconfigjson, after checking that the CRDs are the ones msi-acrpull
// made and that every binding still has its secret (the same Secret), owned by it and attached to its service account.
func (m *migration) tokens(g Gomega) map[string]string {
	ctx := context.Background()
	out := map[string]string{}
	for name, uid := range m.crdUIDs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(m.crdClient.Get(ctx, client.ObjectKey{Name: name}, crd)).To(Succeed())
		g.Expect(crd.UID).To(Equal(uid), "CRD %s was recreated", name)
		g.Expect(crd.DeletionTimestamp).To(BeNil(), "CRD %s is being deleted", name)
	}
	for _, b := range m.bindings {
		g.Expect(env.Client.Get(ctx, client.ObjectKeyFromObject(b.binding), b.binding)).To(Succeed())
		g.Expect(b.binding.GetDeletionTimestamp()).To(BeNil())
		s := &corev1.Secret{}
		g.Expect(env.Client.Get(ctx, client.ObjectKey{Namespace: m.apps, Name: b.secret}, s)).To(Succeed())
		g.Expect(s.UID).To(Equal(m.secrets[b.secret]), "secret %s was recreated", b.secret)
		g.Expect(metav1.GetControllerOf(s)).To(HaveField("UID", b.binding.GetUID()))
		g.Expect(pullSecretNames(m.t, env.Client, m.apps, b.target)).To(ContainElement(b.secret))
		// A digest, so that no failure message shows a token.
		out[b.secret] = fmt.Sprintf("%x", sha256.Sum256(s.Data[corev1.DockerConfigJsonKey]))
	}
	return out
}

// refreshedFrom waits until every secret holds another token than in before (the controller wrote it), checking
// the invariants of tokens all along.
func (m *migration) refreshedFrom(before map[string]string, ctl *controllerProcess, step string) map[string]string {
	m.t.Helper()
	var after map[string]string
	NewWithT(m.t).Eventually(func(g Gomega) {
		g.Expect(ctl.running()).To(Succeed())
		after = m.tokens(g)
		for name, old := range before {
			g.Expect(after[name]).NotTo(Equal(old), "secret %s not refreshed", name)
		}
	}).WithTimeout(60*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), "%s; controller log:\n%s", step, ctl.logs.String())
	return after
}

// startChartController runs the real controller as the chart's Deployment in ns would: its arguments, the chart's
// service account, a fake Azure holding the bindings' identity and registry with 40 s registry tokens (so it
// refreshes each secret every 20 s or so).
func startChartController(t *testing.T, ns string) *controllerProcess {
	t.Helper()
	g := NewWithT(t)
	d := &appsv1.Deployment{}
	g.Expect(env.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "acrpull"}, d)).To(Succeed())
	cloud, environ := startFakeAzure(t)
	cloud.AddRegistry(azurefake.Registry{Host: migrationRegistry})
	cloud.AddIdentity(azurefake.Identity{ClientID: migrationClientID, TenantID: tenantID, AssignedToVM: true})
	cloud.AddRoleAssignment(migrationClientID, migrationRegistry, []string{"app"}, []string{"pull"})
	cloud.SetLifetimes(azurefake.Lifetimes{ACRRefresh: 40 * time.Second, ACRAccess: 40 * time.Second})
	args := append(withTestListeners(d.Spec.Template.Spec.Containers[0].Args, "0"), "--kubeconfig="+serviceAccountKubeconfig(t, ns, "acrpull"))
	return startController(t, args, environ)
}

// noRefusals: not one of the controller's requests was refused, by RBAC or by a policy.
func noRefusals(g Gomega, ctl *controllerProcess) {
	g.Expect(regexp.MustCompile(`(?i)forbidden|denied request|ValidatingAdmissionPolicy`).FindAllString(ctl.logs.String(), -1)).
		To(BeEmpty(), "controller log:\n%s", ctl.logs.String())
}

// Migrating from msi-acrpull's manifests, as config/helm/README.md says, with its own shell blocks run by the real
// kubectl and helm against a real apiserver: msi-acrpull's objects (its Deployment running /manager, its RBAC) and
// bindings of both APIs whose secrets are attached as msi-acrpull leaves them; then the old controller stopped,
// the CRDs adopted and the chart installed, with the real controller as the chart's service account; then the old
// install removed by name. After every step every binding has its secret (the same Secret), owned by it and attached
// to its service account; acrpull refreshes each in place after the install and again after the removal; the CRDs
// keep their UIDs. The trap the README warns of is real: `kubectl delete -f crd.yaml` would delete both CRDs.
func TestMigrationFromMSIAcrpullManifests(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns := fresh("migrated"), fresh("migrated-acrpull")
	kubectl := filepath.Join(env.AssetsDir, "kubectl")
	testdata := filepath.Join(testenv.ModuleRoot(), "test", "chart", "testdata", "msi-acrpull")
	m := newMigration(t, fresh("migrated-apps"), nil)

	// The old install: msi-acrpull's manifests, applied as its README says, and its bindings.
	runShell(t, kubectl+" apply -f "+filepath.Join(testdata, "deploy.yaml"))
	m.createBindings()
	before := m.tokens(g)

	// Step 1: the old controller stopped. Nothing else changes.
	runShell(t, migrationBlock(t, "stop"))
	old := &appsv1.Deployment{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: "msi-acrpull-system", Name: "msi-acrpull-controller-manager"}, old)).To(Succeed())
	g.Expect(old.Spec.Replicas).To(HaveValue(BeEquivalentTo(0)))
	g.Expect(old.Spec.Template.Spec.Containers[0].Command).To(Equal([]string{"/manager"}))
	g.Expect(m.tokens(g)).To(Equal(before))

	// Step 2: without the README's adoption, helm refuses msi-acrpull's CRDs, as the README says.
	refused := fresh("unadopted")
	_, err := helm("install", refused, chartDir, "--kubeconfig", env.KubeconfigPath, "-n", ns, "--create-namespace")
	g.Expect(err).To(MatchError(ContainSubstring("invalid ownership metadata")))
	_, _ = helm("uninstall", refused, "--kubeconfig", env.KubeconfigPath, "-n", ns)

	// The README's install block, for this test's release and namespace.
	install := migrationBlock(t, "install")
	g.Expect(install).To(HavePrefix("RELEASE=acrpull NAMESPACE=acrpull\n"))
	runShell(t, strings.Replace(install, "RELEASE=acrpull NAMESPACE=acrpull", fmt.Sprintf("RELEASE=%s NAMESPACE=%s", release, ns), 1))
	t.Cleanup(func() { _, _ = helm("uninstall", release, "--kubeconfig", env.KubeconfigPath, "-n", ns) })
	for name := range m.crdUIDs {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		g.Expect(m.crdClient.Get(ctx, client.ObjectKey{Name: name}, crd)).To(Succeed())
		g.Expect(crd.Annotations).To(HaveKeyWithValue("meta.helm.sh/release-name", release), name)
	}
	ctl := startChartController(t, ns)
	m.refreshedFrom(before, ctl, "after the install")

	// Step 3: the README's removal block. The old install is gone; the CRDs, bindings and secrets are not.
	runShell(t, migrationBlock(t, "remove"))
	err = env.Client.Get(ctx, client.ObjectKeyFromObject(old), &appsv1.Deployment{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "old Deployment: %v", err)
	for _, name := range []string{"msi-acrpull-manager-role", "msi-acrpull-proxy-role", "msi-acrpull-metrics-reader"} {
		err = env.Client.Get(ctx, client.ObjectKey{Name: name}, &rbacv1.ClusterRole{})
		g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "old ClusterRole %s: %v", name, err)
	}
	oldNS := &corev1.Namespace{}
	g.Expect(client.IgnoreNotFound(env.Client.Get(ctx, client.ObjectKey{Name: "msi-acrpull-system"}, oldNS))).To(Succeed())
	g.Expect(oldNS.UID == "" || oldNS.DeletionTimestamp != nil).To(BeTrue(), "the old namespace is not being deleted")
	before = m.tokens(g)

	// acrpull keeps refreshing without anything of the old install.
	m.refreshedFrom(before, ctl, "after the removal")
	noRefusals(g, ctl)

	// The trap: the reverse of msi-acrpull's install command would delete both CRDs, and every binding with them.
	// Neither README block names them.
	trap := runShell(t, kubectl+" delete --dry-run=server -o name -f "+filepath.Join(testdata, "crd.yaml"))
	for _, name := range migrationCRDs {
		g.Expect(trap).To(ContainSubstring("customresourcedefinition.apiextensions.k8s.io/" + name))
	}
	for _, step := range []string{"stop", "remove", "chart"} {
		block := migrationBlock(t, step)
		g.Expect(block).NotTo(ContainSubstring("delete -f"), step)
		g.Expect(block).NotTo(MatchRegexp(`delete[^\n]*(crd|customresourcedefinition)`), step)
	}
	m.tokens(g)
}

// Migrating from msi-acrpull's chart, as config/helm/README.md says: a release of msi-acrpull's chart (its objects,
// its CRDs among them) with bindings of both APIs; then the README's block (its Deployment deleted, the release
// upgraded to this chart) run with the real kubectl and helm, and the chart's controller. Every binding keeps its
// secret, attached, refreshed in place by acrpull; the CRDs and msi-acrpull's Namespace keep their UIDs; msi-acrpull's
// policies and their ConfigMap are gone.
func TestMigrationFromMSIAcrpullChart(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns := fresh("msi-chart"), fresh("msi-chart-acrpull")
	m := newMigration(t, fresh("msi-chart-apps"), &[2]string{release, "default"})

	// msi-acrpull's chart, its CRDs in its templates as there, installed with its default `namespace` (this test's
	// namespace, so that the value is not among those helm reuses) and an image given, as users install it.
	old := filepath.Join(t.TempDir(), "msi-acrpull-chart")
	runShell(t, fmt.Sprintf("cp -r test/chart/testdata/msi-acrpull-chart %[1]s && cp config/crd/bases/*.microsoft.com_acrpullbindings.yaml %[1]s/templates/ && "+
		"sed -i 's/^namespace: acrpull$/namespace: %[2]s/' %[1]s/values.yaml", old, ns))
	_, err := helm("install", release, old, "--kubeconfig", env.KubeconfigPath, "-n", "default",
		"--set", "image=mcr.microsoft.com/aks/msi-acrpull:v0.1.4")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _, _ = helm("uninstall", release, "--kubeconfig", env.KubeconfigPath, "-n", "default") })
	m.createBindings()
	before := m.tokens(g)
	oldNS := &corev1.Namespace{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: ns}, oldNS)).To(Succeed())

	block := migrationBlock(t, "chart")
	first := "RELEASE=acrpull RELEASE_NAMESPACE=default NAMESPACE=acrpull IMAGE=ghcr.io/acrpull/acrpull:v0.1.0"
	g.Expect(block).To(HavePrefix(first + "\n"))
	runShell(t, strings.Replace(block, first, fmt.Sprintf("RELEASE=%s RELEASE_NAMESPACE=default NAMESPACE=%s IMAGE=ghcr.io/acrpull/acrpull:v0.1.0", release, ns), 1))

	d := &appsv1.Deployment{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "acrpull"}, d)).To(Succeed())
	g.Expect(d.Spec.Template.Spec.Containers[0].Image).To(Equal("ghcr.io/acrpull/acrpull:v0.1.0"))
	g.Expect(d.Spec.Template.Spec.Containers[0].Command).NotTo(ContainElement("/manager"))
	kept := &corev1.Namespace{}
	g.Expect(env.Client.Get(ctx, client.ObjectKey{Name: ns}, kept)).To(Succeed())
	g.Expect(kept.UID).To(Equal(oldNS.UID))
	g.Expect(kept.DeletionTimestamp).To(BeNil(), "the upgrade deleted msi-acrpull's Namespace")
	err = env.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "admission-policies-controller-config"}, &corev1.ConfigMap{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "msi-acrpull's ConfigMap: %v", err)
	err = env.Client.Get(ctx, client.ObjectKey{Name: "controller-token-request-policy"}, &admissionregistrationv1.ValidatingAdmissionPolicy{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "msi-acrpull's policy: %v", err)
	g.Expect(m.tokens(g)).To(Equal(before))

	ctl := startChartController(t, ns)
	before = m.refreshedFrom(before, ctl, "after the upgrade")
	m.refreshedFrom(before, ctl, "later")
	noRefusals(g, ctl)
}
