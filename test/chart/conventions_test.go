/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/scheme"
)

// everything renders every optional part of the chart, so label tests see every kind of object.
var everything = []string{
	"--set", "createNamespace=true", "--set", "podIdentity.enabled=true", "--set", "podIdentity.mic.enabled=true",
	"--set", "podIdentity.netRawPolicy.validationActions={Warn}", "--set", "managedIdentityPolicy.enabled=true",
	"--set", "monitoring.create=true", "--set", "finalizerOnCreate=true",
	"--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",
	"--set", "podIdentity.azureIdentities.web.namespace=apps", "--set", "podIdentity.azureIdentities.web.type=0",
	"--set", "podIdentity.azureIdentities.web.clientID=00000000-0000-0000-0000-000000000000",
	"--set", "podIdentity.azureIdentities.web.binding.name=web", "--set", "podIdentity.azureIdentities.web.binding.selector=web",
}

// Every object says what it belongs to (app.kubernetes.io/component) and carries commonLabels, and so do the
// workloads' pods; a common label never overrides the chart's own (selectors stay as they are).
func TestEveryObjectHasComponentAndCommonLabels(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, append(slices.Clone(everything), "-f", valuesFile(t, `
commonLabels: {team: payments, app.kubernetes.io/name: hijack, app.kubernetes.io/component: hijack}
`))...)
	components := map[string]string{
		"CustomResourceDefinition": "crd", "ValidatingAdmissionPolicy": "admission-policy",
		"ValidatingAdmissionPolicyBinding": "admission-policy", "MutatingAdmissionPolicy": "admission-policy",
		"MutatingAdmissionPolicyBinding": "admission-policy", "ConfigMap": "admission-policy", "Namespace": "namespace",
		"DaemonSet": "node-agent", "AzureIdentity": "node-agent", "AzureIdentityBinding": "node-agent",
	}
	seen := map[string]bool{}
	for _, o := range objs {
		name := o.GetKind() + "/" + o.GetName()
		labels := o.GetLabels()
		want := components[o.GetKind()]
		switch {
		case (strings.HasPrefix(o.GetName(), "acrpull-nmi") || o.GetName() == "aks-addon-exception") && want == "":
			want = "node-agent"
		case strings.HasPrefix(o.GetName(), "acrpull-mic") && o.GetKind() != "ValidatingAdmissionPolicy":
			want = "assignment-controller"
		case want == "":
			want = "controller"
		}
		g.Expect(labels).To(HaveKeyWithValue("app.kubernetes.io/component", want), name)
		g.Expect(labels).To(HaveKeyWithValue("app.kubernetes.io/part-of", "acrpull"), name)
		g.Expect(labels).To(HaveKeyWithValue("app.kubernetes.io/managed-by", "Helm"), name)
		g.Expect(labels).To(HaveKeyWithValue("app.kubernetes.io/instance", releaseName), name)
		g.Expect(labels["app.kubernetes.io/name"]).To(HavePrefix("acrpull"), name)
		g.Expect(labels).To(HaveKeyWithValue("team", "payments"), name)
		seen[want] = true
	}
	g.Expect(seen).To(HaveLen(6), "every component rendered")

	for _, c := range []struct{ kind, name, component string }{
		{"Deployment", "acrpull", "controller"}, {"Deployment", "acrpull-mic", "assignment-controller"},
		{"DaemonSet", "acrpull-nmi", "node-agent"},
	} {
		u := find(objs, c.kind, c.name)
		g.Expect(u).NotTo(BeNil(), c.name)
		pod, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "labels")
		selector, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector", "matchLabels")
		g.Expect(pod).To(HaveKeyWithValue("app.kubernetes.io/component", c.component), c.name)
		g.Expect(pod).To(HaveKeyWithValue("team", "payments"), c.name)
		g.Expect(selector).To(Equal(map[string]string{"app.kubernetes.io/name": c.name, "app.kubernetes.io/instance": releaseName}), c.name)
		for k, v := range selector {
			g.Expect(pod).To(HaveKeyWithValue(k, v), "%s: the selector still selects its pods", c.name)
		}
	}
}

// serviceAccount.create=false runs the controller as an existing account, and everything that names the controller's
// account follows: the Deployment, the RBAC subjects, and the username every admission policy matches.
func TestServiceAccountValues(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=pull-bot")
	g.Expect(ofKind(objs, "ServiceAccount")).To(BeEmpty())
	d := mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull")
	g.Expect(d.Spec.Template.Spec.ServiceAccountName).To(Equal("pull-bot"))
	crb := mustFind[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "acrpull-controller")
	g.Expect(crb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: "pull-bot", Namespace: chartNamespace}))
	rb := mustFind[rbacv1.RoleBinding](t, objs, "RoleBinding", "acrpull-leader-election")
	g.Expect(rb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: "pull-bot", Namespace: chartNamespace}))
	for _, name := range []string{"token-request", "secret-mutation", "service-account-mutation"} {
		p := mustFind[admissionregistrationv1.ValidatingAdmissionPolicy](t, objs, "ValidatingAdmissionPolicy", "acrpull-"+name)
		g.Expect(p.Spec.MatchConditions).To(ConsistOf(HaveField("Expression",
			`request.userInfo.username == "system:serviceaccount:acrpull:pull-bot"`)), name)
	}

	objs = mustTemplate(t, "-f", valuesFile(t, `
serviceAccount: {name: pull-bot, annotations: {azure.workload.identity/client-id: 11111111-1111-1111-1111-111111111111}}
`))
	sa := mustFind[corev1.ServiceAccount](t, objs, "ServiceAccount", "pull-bot")
	g.Expect(sa.Annotations).To(HaveKeyWithValue("azure.workload.identity/client-id", "11111111-1111-1111-1111-111111111111"))
	g.Expect(mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull").Spec.Template.Spec.ServiceAccountName).To(Equal("pull-bot"))

	objs = mustTemplate(t, "--set", "serviceAccount.name=")
	g.Expect(mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull").Spec.Template.Spec.ServiceAccountName).
		To(Equal("acrpull"), "an empty name is the default")
}

// On a real apiserver: the controller running as an existing service account of the user's choosing gets the
// chart's RBAC and is held by the chart's policies. Were the policies still to match "acrpull", this account could
// mint tokens for any audience.
func TestPoliciesHoldAnExistingServiceAccount(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns := fresh("existing-sa"), fresh("acrpull-existing-sa")
	out, err := template(release, "--set", "namespace="+ns, "--set", "createNamespace=true", "--set", "crds.install=false",
		"--set", "serviceAccount.create=false", "--set", "serviceAccount.name=pull-bot")
	g.Expect(err).NotTo(HaveOccurred())
	for _, obj := range mustDecode(t, out) {
		g.Expect(env.Client.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pull-bot"}}
	g.Expect(env.Client.Create(ctx, sa)).To(Succeed())
	tr := &authenticationv1.TokenRequest{}
	g.Expect(env.Client.SubResource("token").Create(ctx, sa, tr)).To(Succeed())
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	ctl, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	g.Expect(err).NotTo(HaveOccurred())

	g.Eventually(func() error {
		return ctl.List(ctx, &corev1.SecretList{}, client.InNamespace(ns))
	}).WithTimeout(activationWindow).Should(Succeed(), "the ClusterRoleBinding should name pull-bot")
	victim := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "victim"}}
	g.Expect(env.Client.Create(ctx, victim)).To(Succeed())
	g.Eventually(func() error {
		req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"https://kubernetes.default.svc"}}}
		return ctl.SubResource("token").Create(ctx, victim.DeepCopy(), req)
	}).WithTimeout(activationWindow).Should(MatchError(ContainSubstring(msgAudience)),
		"the token-request policy should hold system:serviceaccount:%s:pull-bot", ns)
}

// image.digest wins over the tag.
func TestImageDigest(t *testing.T) {
	g := NewWithT(t)
	digest := "sha256:" + strings.Repeat("ab", 32)
	objs := mustTemplate(t, "--set", "image.digest="+digest, "--set", "image.tag=v9.9.9",
		"--set", "podIdentity.enabled=true", "--set", "podIdentity.mic.enabled=true")
	for _, kind := range []string{"Deployment", "DaemonSet"} {
		for _, u := range ofKind(objs, kind) {
			containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			g.Expect(containers).To(HaveEach(HaveKeyWithValue("image", "ghcr.io/acrpull/acrpull@"+digest)), u.GetName())
		}
	}
}

// With no constraints set, the replicas spread across nodes softly; a user's constraint without a labelSelector gets
// the controller's, one with a labelSelector is kept as written.
func TestTopologySpreadConstraints(t *testing.T) {
	g := NewWithT(t)
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": "acrpull", "app.kubernetes.io/instance": releaseName}}
	spec := mustFind[appsv1.Deployment](t, mustTemplate(t), "Deployment", "acrpull").Spec.Template.Spec
	g.Expect(spec.TopologySpreadConstraints).To(ConsistOf(corev1.TopologySpreadConstraint{MaxSkew: 1,
		TopologyKey: "kubernetes.io/hostname", WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: selector}))

	spec = mustFind[appsv1.Deployment](t, mustTemplate(t, "-f", valuesFile(t, `
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}
  - {maxSkew: 2, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app: x}}}
`)), "Deployment", "acrpull").Spec.Template.Spec
	g.Expect(spec.TopologySpreadConstraints).To(ConsistOf(
		corev1.TopologySpreadConstraint{MaxSkew: 1, TopologyKey: "topology.kubernetes.io/zone",
			WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: selector},
		corev1.TopologySpreadConstraint{MaxSkew: 2, TopologyKey: "kubernetes.io/hostname",
			WhenUnsatisfiable: corev1.ScheduleAnyway, LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}}))
}

// The controller's pod sets no user: the image's (65532) runs, or the one the platform assigns. The security context
// values merge over the hardened defaults instead of replacing them; the node agent keeps root and NET_ADMIN.
func TestSecurityContexts(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, "--set", "podIdentity.enabled=true")
	pod := mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull").Spec.Template.Spec
	g.Expect(pod.SecurityContext.RunAsUser).To(BeNil())
	g.Expect(pod.SecurityContext.RunAsGroup).To(BeNil())
	g.Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
	for _, c := range pod.Containers {
		g.Expect(c.SecurityContext.RunAsUser).To(BeNil(), c.Name)
		g.Expect(c.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()), c.Name)
	}
	agent := mustFind[appsv1.DaemonSet](t, objs, "DaemonSet", "acrpull-nmi").Spec.Template.Spec.Containers[0].SecurityContext
	g.Expect(agent.RunAsUser).To(HaveValue(BeEquivalentTo(0)))
	g.Expect(agent.Capabilities.Add).To(ContainElement(corev1.Capability("NET_ADMIN")))

	objs = mustTemplate(t, "-f", valuesFile(t, `
podSecurityContext: {fsGroup: 2000, seccompProfile: {type: Localhost, localhostProfile: acrpull.json}}
securityContext: {runAsUser: 1001, capabilities: {drop: [ALL, NET_RAW]}}
`))
	pod = mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull").Spec.Template.Spec
	g.Expect(pod.SecurityContext.FSGroup).To(HaveValue(BeEquivalentTo(2000)))
	g.Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()), "defaults stay")
	g.Expect(pod.SecurityContext.SeccompProfile).To(Equal(&corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: ptrTo("acrpull.json")}))
	sc := pod.Containers[0].SecurityContext
	g.Expect(sc.RunAsUser).To(HaveValue(BeEquivalentTo(1001)))
	g.Expect(sc.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL", "NET_RAW"}))
	g.Expect(sc.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()), "defaults stay")
	g.Expect(sc.AllowPrivilegeEscalation).To(HaveValue(BeFalse()), "defaults stay")
	g.Expect(sc.RunAsNonRoot).To(HaveValue(BeTrue()), "defaults stay")
}

// The schema accepts the values charts of the field have, at once.
func TestSchemaAcceptsConventionalValues(t *testing.T) {
	_, err := template(releaseName, "-f", valuesFile(t, `
image: {digest: "sha256:`+strings.Repeat("0", 64)+`"}
serviceAccount: {create: false, name: pull-bot, annotations: {a: b}}
topologySpreadConstraints: [{maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}]
podSecurityContext: {fsGroup: 2000, runAsNonRoot: true}
securityContext: {readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
commonLabels: {team: payments}
podLabels: {sidecar.istio.io/inject: "false"}
`))
	if err != nil {
		t.Fatal(err)
	}
}

// Both AcrPullBinding CRDs, as the chart renders them, are in the category acrpull, so `kubectl get acrpull -A` lists
// the bindings of both groups, with the Reason and Age columns the apiserver prints for each.
func TestKubectlGetAcrpullListsBothGroups(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	dir := t.TempDir()
	crds, err := template(releaseName, "--show-only", "templates/crds.yaml", "--set", "crds.keep=false")
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(os.WriteFile(filepath.Join(dir, "crds.yaml"), []byte(crds), 0o600)).To(Succeed())
	kubectl := func(args ...string) string {
		cmd := exec.Command(filepath.Join(env.AssetsDir, "kubectl"), append([]string{"--kubeconfig", env.KubeconfigPath}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		g.Expect(err).NotTo(HaveOccurred(), "kubectl %s: %s", strings.Join(args, " "), out)
		return string(out)
	}
	kubectl("apply", "--server-side", "--force-conflicts", "-f", filepath.Join(dir, "crds.yaml"))

	disco, err := discovery.NewDiscoveryClientForConfig(env.Config)
	g.Expect(err).NotTo(HaveOccurred())
	for _, gv := range []string{acrv1beta2.GroupVersion.String(), acrv1beta1.GroupVersion.String()} {
		g.Eventually(func() ([]string, error) {
			list, err := disco.ServerResourcesForGroupVersion(gv)
			if err != nil {
				return nil, err
			}
			for _, r := range list.APIResources {
				if r.Name == "acrpullbindings" {
					return r.Categories, nil
				}
			}
			return nil, fmt.Errorf("no acrpullbindings in %s", gv)
		}).WithTimeout(30*time.Second).Should(ContainElement("acrpull"), gv)
	}

	ns := fresh("kubectl-get")
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	ready := metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: "TokenExchangeFailed", Message: "test",
		LastTransitionTime: metav1.Now()}
	v2 := &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "new-style"},
		Spec: acrv1beta2.AcrPullBindingSpec{ServiceAccountName: "app",
			ACR:  acrv1beta2.AcrConfiguration{Server: "example.azurecr.io", Scope: "repository:app:pull", Environment: acrv1beta2.AzureEnvironmentPublicCloud},
			Auth: acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: "00000000-0000-0000-0000-000000000001"}}}}
	v1 := &acrv1beta1.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "old-style"},
		Spec: acrv1beta1.AcrPullBindingSpec{AcrServer: "example.azurecr.io", ManagedIdentityClientID: "00000000-0000-0000-0000-000000000001"}}
	g.Expect(env.Client.Create(ctx, v2)).To(Succeed())
	g.Expect(env.Client.Create(ctx, v1)).To(Succeed())
	t.Cleanup(func() { _ = env.Client.Delete(ctx, v2); _ = env.Client.Delete(ctx, v1) })
	verified := metav1.Condition{Type: "Verified", Status: metav1.ConditionFalse, Reason: "ScopeDenied", Message: "test",
		LastTransitionTime: metav1.Now()}
	v2.Status.Conditions = []metav1.Condition{ready, verified}
	v1.Status.Conditions = []metav1.Condition{ready, verified}
	g.Expect(env.Client.Status().Update(ctx, v2)).To(Succeed())
	g.Expect(env.Client.Status().Update(ctx, v1)).To(Succeed())

	out := kubectl("get", "acrpull", "-A")
	var headers, rows []string
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		switch {
		case len(fields) > 0 && fields[0] == "NAMESPACE":
			headers = append(headers, line)
		case len(fields) > 1 && fields[0] == ns:
			rows = append(rows, line)
		}
	}
	g.Expect(headers).To(HaveLen(2), "one table per group:\n%s", out)
	for _, h := range headers {
		g.Expect(strings.Fields(h)).To(ContainElements("READY", "REASON", "VERIFIED", "AGE"), out)
		g.Expect(strings.Fields(h)[len(strings.Fields(h))-1]).To(Equal("AGE"), out)
	}
	g.Expect(rows).To(ConsistOf(
		And(ContainSubstring("acrpullbinding.acrpull.microsoft.com/new-style"), ContainSubstring("TokenExchangeFailed"), ContainSubstring("ScopeDenied")),
		And(ContainSubstring("acrpullbinding.msi-acrpull.microsoft.com/old-style"), ContainSubstring("TokenExchangeFailed"), ContainSubstring("ScopeDenied"))), out)
}
