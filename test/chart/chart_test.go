/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/acrpull/acrpull/internal/harness/image"
	"github.com/acrpull/acrpull/internal/harness/testenv"
)

func TestHelmLint(t *testing.T) {
	for name, flags := range map[string][]string{
		"defaults":        nil,
		"deploy/latest":   {"--set", "namespace=msi-acrpull-system", "--set", "createNamespace=true"},
		"everything on":   {"--set", "monitoring.create=true", "--set", "monitoring.kind=ServiceMonitor", "--set", "labelSelector=shard=a"},
		"minimal install": {"--set", "crds.install=false", "--set", "podDisruptionBudget.enabled=false", "--set", "replicas=1"},
		"pod identity":    {"--set", "podIdentity.enabled=true", "--set", "createNamespace=true", "--set", "podIdentity.secretNames={sp-secret}"},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}, flags...)
			if out, err := helm(args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// The default render is the whole install: nothing more (no params ConfigMap, no Namespace, no monitor without the
// Prometheus Operator), nothing less.
func TestDefaultsRenderTheControllerInstall(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t)
	var got []string
	for _, o := range objs {
		got = append(got, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
	}
	g.Expect(got).To(ConsistOf(
		"CustomResourceDefinition//acrpullbindings.acrpull.microsoft.com",
		"CustomResourceDefinition//acrpullbindings.msi-acrpull.microsoft.com",
		"ServiceAccount/acrpull/acrpull",
		"ClusterRole//acrpull-controller",
		"ClusterRoleBinding//acrpull-controller",
		"Role/acrpull/acrpull-leader-election",
		"RoleBinding/acrpull/acrpull-leader-election",
		"Deployment/acrpull/acrpull",
		"Service/acrpull/acrpull-metrics",
		"PodDisruptionBudget/acrpull/acrpull",
		"ValidatingAdmissionPolicy//acrpull-token-request",
		"ValidatingAdmissionPolicy//acrpull-secret-mutation",
		"ValidatingAdmissionPolicy//acrpull-service-account-mutation",
		"ValidatingAdmissionPolicyBinding//acrpull-token-request",
		"ValidatingAdmissionPolicyBinding//acrpull-secret-mutation",
		"ValidatingAdmissionPolicyBinding//acrpull-service-account-mutation",
		"ValidatingAdmissionPolicy//acrpull-binding-authority-host",
		"ValidatingAdmissionPolicyBinding//acrpull-binding-authority-host",
	))

	d := mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull")
	g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(2))
	pod := d.Spec.Template.Spec
	g.Expect(pod.ServiceAccountName).To(Equal("acrpull"))
	g.Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(pod.SecurityContext.RunAsUser).To(BeNil(), "the image's user runs, or the platform's")
	g.Expect(pod.SecurityContext.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))
	g.Expect(pod.Containers).To(HaveLen(1))
	c := pod.Containers[0]
	g.Expect(c.Image).To(Equal("ghcr.io/acrpull/acrpull:v0.1.0"), "the tag defaults to the chart's appVersion")
	g.Expect(c.Args).To(ContainElements(
		"--metrics-bind-address=:8080", "--health-probe-bind-address=:8081", "--leader-elect",
		"--leader-election-namespace=acrpull", "--service-account-token-audience=api://AzureCRTokenExchange",
		"--ttl-rotation-fraction=0.5", "--allowed-acr-server-suffixes=azurecr.io", "--workers=16",
		"--kube-api-qps=1000", "--kube-api-burst=2000", "--zap-log-level=info"))
	g.Expect(c.Args).NotTo(ContainElement(HavePrefix("--label-selector")))
	g.Expect(c.Env).To(BeEmpty(), "no v1beta1 defaults unless set")
	g.Expect(c.Ports).To(ContainElements(
		corev1.ContainerPort{Name: "metrics", ContainerPort: 8080, Protocol: corev1.ProtocolTCP},
		corev1.ContainerPort{Name: "health", ContainerPort: 8081, Protocol: corev1.ProtocolTCP}))
	g.Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
	g.Expect(c.LivenessProbe.HTTPGet.Port).To(Equal(intstr.FromString("health")))
	g.Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
	g.Expect(c.ReadinessProbe.HTTPGet.Port).To(Equal(intstr.FromString("health")))
	g.Expect(c.Resources.Requests).NotTo(BeEmpty())
	g.Expect(c.Resources.Limits).NotTo(BeEmpty())
	sc := c.SecurityContext
	g.Expect(sc.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(sc.RunAsUser).To(BeNil(), "the image's user runs, or the platform's")
	g.Expect(sc.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(sc.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	g.Expect(sc.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL"}))
	g.Expect(sc.Capabilities.Add).To(BeEmpty())
	g.Expect(sc.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))

	svc := mustFind[corev1.Service](t, objs, "Service", "acrpull-metrics")
	g.Expect(svc.Spec.Selector).To(Equal(d.Spec.Selector.MatchLabels))
	g.Expect(svc.Spec.Ports).To(ConsistOf(HaveField("Name", "metrics")))
	pdb := mustFind[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "acrpull")
	g.Expect(pdb.Spec.Selector.MatchLabels).To(Equal(d.Spec.Selector.MatchLabels))
	g.Expect(pdb.Spec.MaxUnavailable).To(HaveValue(Equal(intstr.FromInt32(1))))

	crb := mustFind[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "acrpull-controller")
	g.Expect(crb.RoleRef.Name).To(Equal("acrpull-controller"))
	g.Expect(crb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: "acrpull", Namespace: "acrpull"}))
	role := mustFind[rbacv1.Role](t, objs, "Role", "acrpull-leader-election")
	g.Expect(role.Rules).To(ContainElement(rbacv1.PolicyRule{APIGroups: []string{"coordination.k8s.io"},
		Resources: []string{"leases"}, ResourceNames: []string{"aks.azure.com"}, Verbs: []string{"get", "update"}}))

	// Every policy matches only the controller, fails closed, and has no parameters to go missing.
	for _, name := range []string{"token-request", "secret-mutation", "service-account-mutation"} {
		p := mustFind[admissionregistrationv1.ValidatingAdmissionPolicy](t, objs, "ValidatingAdmissionPolicy", "acrpull-"+name)
		g.Expect(p.Spec.FailurePolicy).To(HaveValue(Equal(admissionregistrationv1.Fail)), name)
		g.Expect(p.Spec.ParamKind).To(BeNil(), name)
		g.Expect(p.Spec.MatchConditions).To(ConsistOf(HaveField("Expression",
			`request.userInfo.username == "system:serviceaccount:acrpull:acrpull"`)), name)
		b := mustFind[admissionregistrationv1.ValidatingAdmissionPolicyBinding](t, objs, "ValidatingAdmissionPolicyBinding", "acrpull-"+name)
		g.Expect(b.Spec.PolicyName).To(Equal(p.Name))
		g.Expect(b.Spec.ParamRef).To(BeNil())
		g.Expect(b.Spec.ValidationActions).To(Equal([]admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}))
	}
}

// The Deployment's arguments are flags the controller binary defines and accepts (it exits 2 on a bad flag, before
// it looks for a cluster).
func TestDeploymentArgsParseInTheController(t *testing.T) {
	bin := programBinary(t, "acrpull")
	for name, flags := range map[string][]string{
		"defaults": nil,
		"every value set": {"-f", valuesFile(t, `
labelSelector: shard in (a,b)
logLevel: 3
allowedACRServerSuffixes: [azurecr.io, azurecr.us]
ttlRotationFraction: 0.01
verifyPull: false
kubeAPIQPS: 12.5
kubeAPICompression: true
v1beta1: {acrServer: legacy.azurecr.io, managedIdentityClientID: 11111111-1111-1111-1111-111111111111}
`)},
	} {
		t.Run(name, func(t *testing.T) {
			d := mustFind[appsv1.Deployment](t, mustTemplate(t, flags...), "Deployment", "acrpull")
			c := d.Spec.Template.Spec.Containers[0]
			cmd := exec.Command(bin, append(slices.Clone(c.Args), "--kubeconfig="+filepath.Join(t.TempDir(), "absent"))...)
			cmd.Env = []string{"HOME=" + t.TempDir()}
			for _, e := range c.Env {
				cmd.Env = append(cmd.Env, e.Name+"="+e.Value)
			}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the controller should stop for want of a cluster; got %v\n%s", err, out)
			}
			if exit.ExitCode() == 2 {
				t.Fatalf("the controller rejected the chart's arguments %q:\n%s", c.Args, out)
			}
		})
	}
}

func TestValuesReachDeploymentAndPolicies(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, "-f", valuesFile(t, `
namespace: pull-system
createNamespace: true
image: {repository: registry.example/acrpull, tag: v9.9.9, pullPolicy: Always}
replicas: 3
tokenAudience: api://custom-exchange
ttlRotationFraction: 0.25
verifyPull: false
allowedACRServerSuffixes: [azurecr.io, azurecr.us]
allowedAuthorityHosts: [login.airgap.example, "https://adfs.airgap.example:8443/adfs/"]
labelSelector: shard=a
workers: 4
kubeAPIQPS: 50
kubeAPIBurst: 100
kubeAPICompression: true
logLevel: debug
v1beta1:
  acrServer: legacy.azurecr.io
  managedIdentityClientID: 11111111-1111-1111-1111-111111111111
  managedIdentityResourceID: /subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z
  armResource: https://management.usgovcloudapi.net/
extraEnv: [{name: HTTPS_PROXY, value: http://proxy:3128}]
extraArgs: [--acr-token-audience=]
tolerations: [{key: CriticalAddonsOnly, operator: Exists}]
podDisruptionBudget: {enabled: true, maxUnavailable: null, minAvailable: 2}
`))
	ns := mustFind[corev1.Namespace](t, objs, "Namespace", "pull-system")
	g.Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
	for _, o := range objs {
		if o.GetKind() != "Namespace" && o.GetNamespace() != "" {
			g.Expect(o.GetNamespace()).To(Equal("pull-system"), o.GetKind()+"/"+o.GetName())
		}
	}
	d := mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull")
	g.Expect(*d.Spec.Replicas).To(BeEquivalentTo(3))
	c := d.Spec.Template.Spec.Containers[0]
	g.Expect(c.Image).To(Equal("registry.example/acrpull:v9.9.9"))
	g.Expect(c.ImagePullPolicy).To(Equal(corev1.PullAlways))
	g.Expect(c.Args).To(ContainElements("--leader-election-namespace=pull-system",
		"--service-account-token-audience=api://custom-exchange", "--ttl-rotation-fraction=0.25", "--verify-pull=false",
		"--allowed-acr-server-suffixes=azurecr.io,azurecr.us", "--label-selector=shard=a",
		"--allowed-authority-hosts=login.airgap.example,https://adfs.airgap.example:8443/adfs/", "--workers=4",
		"--kube-api-qps=50", "--kube-api-burst=100", "--kube-api-compression=true", "--zap-log-level=debug", "--acr-token-audience="))
	g.Expect(c.Args[len(c.Args)-1]).To(Equal("--acr-token-audience="), "extra arguments come last, so they win")
	g.Expect(c.Env).To(ConsistOf(
		corev1.EnvVar{Name: "ACR_SERVER", Value: "legacy.azurecr.io"},
		corev1.EnvVar{Name: "MANAGED_IDENTITY_CLIENT_ID", Value: "11111111-1111-1111-1111-111111111111"},
		corev1.EnvVar{Name: "MANAGED_IDENTITY_RESOURCE_ID", Value: "/subscriptions/x/resourceGroups/y/providers/Microsoft.ManagedIdentity/userAssignedIdentities/z"},
		corev1.EnvVar{Name: "ARM_RESOURCE", Value: "https://management.usgovcloudapi.net/"},
		corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy:3128"}))
	g.Expect(d.Spec.Template.Spec.Tolerations).To(HaveLen(1))
	pdb := mustFind[policyv1.PodDisruptionBudget](t, objs, "PodDisruptionBudget", "acrpull")
	g.Expect(pdb.Spec.MinAvailable).To(HaveValue(Equal(intstr.FromInt32(2))))
	g.Expect(pdb.Spec.MaxUnavailable).To(BeNil())

	crb := mustFind[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", "acrpull-controller")
	g.Expect(crb.Subjects).To(ConsistOf(HaveField("Namespace", "pull-system")))
	token := mustFind[admissionregistrationv1.ValidatingAdmissionPolicy](t, objs, "ValidatingAdmissionPolicy", "acrpull-token-request")
	g.Expect(token.Spec.MatchConditions[0].Expression).To(ContainSubstring(`"system:serviceaccount:pull-system:acrpull"`))
	g.Expect(token.Spec.Validations[0].Expression).To(ContainSubstring(`== "api://custom-exchange"`))
	g.Expect(token.Spec.Validations[0].Message).To(ContainSubstring("api://custom-exchange"))
}

// A second install (a shard) names its cluster-scoped objects after its release, so both can coexist; the one
// exception is the Namespace the value `namespace` names (createNamespace auto renders it under `helm template`,
// which cannot look whether it exists).
func TestReleaseNamesClusterScopedObjects(t *testing.T) {
	g := NewWithT(t)
	out, err := template("shard-b", "--set", "namespace=acrpull-shard-b", "--set", "crds.install=false")
	g.Expect(err).NotTo(HaveOccurred())
	objs := mustDecode(t, out)
	for _, o := range objs {
		if o.GetKind() == "Namespace" {
			g.Expect(o.GetName()).To(Equal("acrpull-shard-b"))
			continue
		}
		if o.GetNamespace() == "" {
			g.Expect(o.GetName()).To(HavePrefix("shard-b-"), o.GetKind())
		}
	}
	g.Expect(ofKind(objs, "CustomResourceDefinition")).To(BeEmpty())
}

// The chart's ClusterRole is controller-gen's, rule for rule, and every rule is explained in the template.
func TestClusterRoleIsControllerGenRole(t *testing.T) {
	g := NewWithT(t)
	data, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "config", "rbac", "role.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	var generated rbacv1.ClusterRole
	g.Expect(yaml.UnmarshalStrict(data, &generated)).To(Succeed())

	rendered, err := template(releaseName, "--show-only", "templates/clusterrole.yaml")
	g.Expect(err).NotTo(HaveOccurred())
	role := mustFind[rbacv1.ClusterRole](t, mustDecode(t, rendered), "ClusterRole", "acrpull-controller")
	g.Expect(role.Rules).To(Equal(generated.Rules),
		"config/helm/templates/clusterrole.yaml is stale: run `make manifests`")

	lines := strings.Split(rendered, "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "- ") {
			g.Expect(lines[i-1]).To(HavePrefix("# "), "rule at line %d has no reason above it", i+1)
		}
	}
	for _, r := range role.Rules {
		for _, verb := range r.Verbs {
			g.Expect(verb).NotTo(Equal("*"), "no wildcard verbs")
		}
		if slices.Contains(r.Resources, "secrets") {
			g.Expect(r.Verbs).NotTo(ContainElement("update"), "secrets are patched, never updated")
		}
	}
}

// The chart's CRDs are controller-gen's with the chart's labels; crds.keep only adds helm's keep annotation. The four aadpodidentity.k8s.io
// CRDs render only with podIdentity.enabled, under the same crds.install and crds.keep.
func TestCRDsAreControllerGenCRDs(t *testing.T) {
	g := NewWithT(t)
	files, err := filepath.Glob(filepath.Join(testenv.ModuleRoot(), "config", "crd", "bases", "*.yaml"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(files).To(HaveLen(6))
	generated := map[string]map[string]any{}
	var acrpull []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		g.Expect(err).NotTo(HaveOccurred())
		var crd map[string]any
		g.Expect(yaml.Unmarshal(data, &crd)).To(Succeed())
		name := crd["metadata"].(map[string]any)["name"].(string)
		generated[name] = crd
		if !strings.HasSuffix(name, ".aadpodidentity.k8s.io") {
			acrpull = append(acrpull, name)
		}
	}
	g.Expect(acrpull).To(ConsistOf("acrpullbindings.acrpull.microsoft.com", "acrpullbindings.msi-acrpull.microsoft.com"))

	for _, tc := range []struct {
		name  string
		flags []string
		want  []string
	}{
		{"controller only", nil, acrpull},
		{"with pod identity", []string{"--set", "podIdentity.enabled=true"}, mapKeys(generated)},
	} {
		plain := ofKind(mustTemplate(t, append(tc.flags, "--set", "crds.keep=false")...), "CustomResourceDefinition")
		var names []string
		for _, crd := range plain {
			names = append(names, crd.GetName())
			g.Expect(crd.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/component", "crd"), crd.GetName())
			g.Expect(crd.GetLabels()).To(HaveKeyWithValue("app.kubernetes.io/part-of", "acrpull"), crd.GetName())
			unstructured.RemoveNestedField(crd.Object, "metadata", "labels")
			g.Expect(crd.Object).To(Equal(generated[crd.GetName()]),
				"%s differs from config/crd/bases: run `make manifests`", crd.GetName())
		}
		g.Expect(names).To(ConsistOf(tc.want), tc.name)
		kept := ofKind(mustTemplate(t, tc.flags...), "CustomResourceDefinition")
		g.Expect(kept).To(HaveLen(len(tc.want)), tc.name)
		for _, crd := range kept {
			g.Expect(crd.GetAnnotations()).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"), tc.name)
		}
		g.Expect(ofKind(mustTemplate(t, append(tc.flags, "--set", "crds.install=false")...), "CustomResourceDefinition")).
			To(BeEmpty(), tc.name)
	}
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func TestMonitoringObject(t *testing.T) {
	const prometheusOperator = "monitoring.coreos.com/v1"
	for _, tc := range []struct {
		name  string
		flags []string
		want  string // kind rendered, "" for none
	}{
		{"auto without the Prometheus Operator", nil, ""},
		{"auto with the Prometheus Operator", []string{"--api-versions", prometheusOperator}, "PodMonitor"},
		{"forced on", []string{"--set", "monitoring.create=true"}, "PodMonitor"},
		{"forced off", []string{"--api-versions", prometheusOperator, "--set", "monitoring.create=false"}, ""},
		{"ServiceMonitor", []string{"--api-versions", prometheusOperator, "--set", "monitoring.kind=ServiceMonitor"}, "ServiceMonitor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			objs := mustTemplate(t, append(tc.flags, "--set", "monitoring.labels.release=prometheus")...)
			var monitors []*unstructured.Unstructured
			for _, o := range objs {
				if strings.HasPrefix(o.GetAPIVersion(), "monitoring.coreos.com/") {
					monitors = append(monitors, o)
				}
			}
			if tc.want == "" {
				g.Expect(monitors).To(BeEmpty())
				return
			}
			g.Expect(monitors).To(HaveLen(1))
			m := monitors[0]
			g.Expect(m.GetKind()).To(Equal(tc.want))
			g.Expect(m.GetNamespace()).To(Equal(chartNamespace))
			g.Expect(m.GetLabels()).To(HaveKeyWithValue("release", "prometheus"))
			field := map[string]string{"PodMonitor": "podMetricsEndpoints", "ServiceMonitor": "endpoints"}[tc.want]
			endpoints, _, _ := unstructured.NestedSlice(m.Object, "spec", field)
			g.Expect(endpoints).To(ConsistOf(HaveKeyWithValue("port", "metrics")))
			selector, _, _ := unstructured.NestedStringMap(m.Object, "spec", "selector", "matchLabels")
			g.Expect(selector).To(HaveKeyWithValue("app.kubernetes.io/name", "acrpull"))
		})
	}
}

// values.schema.json rejects bad values before anything renders, saying which value and why.
func TestSchemaRejectsBadValues(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values string
		want   []string // substrings of helm's error, in order
	}{
		{"ttlRotationFraction 1", "ttlRotationFraction: 1", []string{"/ttlRotationFraction", "exclusiveMaximum"}},
		{"ttlRotationFraction 0", "ttlRotationFraction: 0", []string{"/ttlRotationFraction", "exclusiveMinimum"}},
		{"ttlRotationFraction negative", "ttlRotationFraction: -0.5", []string{"/ttlRotationFraction", "exclusiveMinimum"}},
		{"replicas 0", "replicas: 0", []string{"/replicas", "minimum: got 0, want 1"}},
		{"replicas not a number", "replicas: two", []string{"/replicas", "want integer"}},
		{"suffix with a scheme", "allowedACRServerSuffixes: [https://azurecr.io]", []string{"/allowedACRServerSuffixes/0", "'https://azurecr.io' is not valid hostname"}},
		{"suffix with a path", "allowedACRServerSuffixes: [azurecr.io/evil]", []string{"/allowedACRServerSuffixes/0", "is not valid hostname"}},
		{"suffix with a wildcard", "allowedACRServerSuffixes: ['*.azurecr.io']", []string{"/allowedACRServerSuffixes/0", "is not valid hostname"}},
		{"suffixes not a list", "allowedACRServerSuffixes: azurecr.io", []string{"/allowedACRServerSuffixes", "want array"}},
		{"empty audience", `tokenAudience: ""`, []string{"/tokenAudience", "minLength"}},
		{"two audiences", "tokenAudience: a,b", []string{"/tokenAudience", "does not match pattern"}},
		{"audience with a quote", `tokenAudience: 'a"b'`, []string{"/tokenAudience", "does not match pattern"}},
		{"namespace not a DNS label", "namespace: Acr_Pull", []string{"/namespace", "does not match pattern"}},
		{"unknown value", "replica: 2", []string{"additional properties 'replica' not allowed"}},
		{"unknown log level", "logLevel: verbose", []string{"/logLevel", "value must be one of 'debug', 'info', 'error', 'panic'"}},
		{"zero workers", "workers: 0", []string{"/workers", "minimum"}},
		{"v1beta1 server with a scheme", "v1beta1: {acrServer: 'https://x.azurecr.io'}", []string{"/v1beta1/acrServer", "is not valid hostname"}},
		{"v1beta1 client ID not a GUID", "v1beta1: {managedIdentityClientID: my-identity}", []string{"/v1beta1/managedIdentityClientID", "does not match pattern"}},
		{"both PDB bounds", "podDisruptionBudget: {minAvailable: 1}", []string{"/podDisruptionBudget/maxUnavailable", "want null"}},
		{"monitor kind", "monitoring: {kind: Probe}", []string{"/monitoring/kind", "value must be one of 'PodMonitor', 'ServiceMonitor'"}},
		{"monitor create", "monitoring: {create: maybe}", []string{"/monitoring/create", "value must be one of 'auto', true, false"}},
		{"monitor API group", "monitoring: {apiGroup: example.com}", []string{"/monitoring/apiGroup", "value must be one of 'monitoring.coreos.com', 'azmonitoring.coreos.com'"}},
		{"rules create", "monitoring: {rules: {create: maybe}}", []string{"/monitoring/rules/create", "value must be one of 'auto', true, false"}},
		{"dashboard enabled", "monitoring: {dashboard: {enabled: yes please}}", []string{"/monitoring/dashboard/enabled", "got string, want boolean"}},
		{"extra arg not a flag", "extraArgs: [leader-elect]", []string{"/extraArgs/0", "does not match pattern"}},
		{"unknown pod identity value", "podIdentity: {enable: true}", []string{"/podIdentity", "additional properties 'enable' not allowed"}},
		{"unknown token source", "podIdentity: {tokenSource: secret}", []string{"/podIdentity/tokenSource", "value must be one of '', 'auto', 'federation', 'imds'"}},
		{"unknown operation mode", "podIdentity: {operationMode: Managed}", []string{"/podIdentity/operationMode", "value must be one of 'standard', 'managed'"}},
		{"unknown cloud", "podIdentity: {cloud: AzurePublicCloud}", []string{"/podIdentity/cloud", "value must be one of"}},
		{"port out of range", "podIdentity: {probePort: 70000}", []string{"/podIdentity/probePort", "maximum"}},
		{"negative per-pod request bound", "podIdentity: {maxConcurrentRequestsPerPod: -1}", []string{"/podIdentity/maxConcurrentRequestsPerPod", "minimum"}},
		{"tenant not a GUID", "podIdentity: {tenantID: contoso}", []string{"/podIdentity/tenantID", "does not match pattern"}},
		{"authority host without https", "podIdentity: {authorityHost: 'login.microsoftonline.us'}", []string{"/podIdentity/authorityHost", "does not match pattern"}},
		{"two audiences in one", "podIdentity: {hostTokenAudiences: ['a,b']}", []string{"/podIdentity/hostTokenAudiences/0", "does not match pattern"}},
		{"secret name not a name", "podIdentity: {secretNames: ['*']}", []string{"/podIdentity/secretNames/0", "does not match pattern"}},
		{"unknown iptables mode", "podIdentity: {iptablesMode: xtables}", []string{"/podIdentity/iptablesMode", "value must be one of 'auto', 'legacy', 'nft'"}},
		{"unknown NET_RAW policy action", "podIdentity: {netRawPolicy: {validationActions: [Block]}}", []string{"/podIdentity/netRawPolicy/validationActions/0", "value must be one of 'Deny', 'Warn', 'Audit'"}},
		{"exempt namespace not a name", "podIdentity: {netRawPolicy: {exemptNamespaces: [Kube_System]}}", []string{"/podIdentity/netRawPolicy/exemptNamespaces/0", "does not match pattern"}},
		{"agent extra arg not a flag", "podIdentity: {extraArgs: [redirect=false]}", []string{"/podIdentity/extraArgs/0", "does not match pattern"}},
		{"identity type 3", "podIdentity: {azureIdentities: {x: {namespace: a, type: 3, clientID: 11111111-1111-1111-1111-111111111111, binding: {name: b, selector: s}}}}",
			[]string{"/podIdentity/azureIdentities/x/type", "value must be one of 0, 1, 2"}},
		{"identity without binding", "podIdentity: {azureIdentities: {x: {namespace: a, type: 0, clientID: 11111111-1111-1111-1111-111111111111}}}",
			[]string{"/podIdentity/azureIdentities/x", "missing property 'binding'"}},
		{"bad identity resource ID", "podIdentity: {azureIdentities: {x: {namespace: a, type: 0, clientID: 11111111-1111-1111-1111-111111111111, resourceID: /subscriptions/s/identity, binding: {name: b, selector: s}}}}",
			[]string{"/podIdentity/azureIdentities/x/resourceID", "does not match pattern"}},
		{"unknown service account value", "serviceAccount: {automount: true}", []string{"/serviceAccount", "additional properties 'automount' not allowed"}},
		{"service account name not a name", "serviceAccount: {name: Pull_Bot}", []string{"/serviceAccount/name", "does not match pattern"}},
		{"digest without algorithm", "image: {digest: abc123}", []string{"/image/digest", "does not match pattern"}},
		{"image string without a repository path", "image: 'acrpull:v1'", []string{"/image", "does not match pattern"}},
		{"unknown security context field", "securityContext: {runAsUserr: 1}", []string{"/securityContext", "additional properties 'runAsUserr' not allowed"}},
		{"unknown pod security context field", "podSecurityContext: {readOnlyRootFilesystem: true}", []string{"/podSecurityContext", "additional properties 'readOnlyRootFilesystem' not allowed"}},
		{"spread without topology key", "topologySpreadConstraints: [{maxSkew: 1, whenUnsatisfiable: DoNotSchedule}]", []string{"/topologySpreadConstraints/0", "missing property 'topologyKey'"}},
		{"common label not a string", "commonLabels: {tier: {a: b}}", []string{"/commonLabels/tier", "want string"}},
		{"service principal without its secret", "podIdentity: {azureIdentities: {x: {namespace: a, type: 1, clientID: 11111111-1111-1111-1111-111111111111, binding: {name: b, selector: s}}}}",
			[]string{"/podIdentity/azureIdentities/x", "missing properties 'tenantID', 'clientPassword'"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := template(releaseName, "-f", valuesFile(t, tc.values))
			if err == nil {
				t.Fatalf("values %q rendered; the schema should reject them", tc.values)
			}
			pattern := "(?s)" + strings.Join(quoteAll(tc.want), ".*")
			if !regexp.MustCompile(pattern).MatchString(err.Error()) {
				t.Fatalf("values %q: the error should mention %q; got:\n%v", tc.values, tc.want, err)
			}
			if !strings.Contains(err.Error(), "values don't meet the specifications of the schema") {
				t.Fatalf("values %q were rejected, but not by the schema:\n%v", tc.values, err)
			}
		})
	}
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = regexp.QuoteMeta(x)
	}
	return out
}

// Every workload the chart renders runs a program the image holds, as the image's user where the chart does not say
// otherwise: the controller by the image's entrypoint, the node agent and the assignment controller by command.
func TestWorkloadsRunProgramsOfTheImage(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, "--set", "podIdentity.enabled=true", "--set", "podIdentity.mic.enabled=true")
	var specs []corev1.PodSpec
	for _, d := range ofKind(objs, "Deployment") {
		specs = append(specs, mustFind[appsv1.Deployment](t, objs, "Deployment", d.GetName()).Spec.Template.Spec)
	}
	for _, ds := range ofKind(objs, "DaemonSet") {
		specs = append(specs, mustFind[appsv1.DaemonSet](t, objs, "DaemonSet", ds.GetName()).Spec.Template.Spec)
	}
	g.Expect(specs).To(HaveLen(3), "controller, assignment controller, node agent")
	var programs []string
	for _, spec := range specs {
		for _, c := range spec.Containers {
			g.Expect(c.Image).To(Equal("ghcr.io/acrpull/acrpull:v0.1.0"), "one image, tagged with the chart's appVersion as make image tags it")
			program := "/acrpull" // the image's entrypoint
			if len(c.Command) > 0 {
				program = c.Command[0]
			}
			programs = append(programs, program)
		}
	}
	var built []string
	for _, b := range image.Binaries {
		built = append(built, "/"+b)
	}
	g.Expect(programs).To(ConsistOf(built))
}
