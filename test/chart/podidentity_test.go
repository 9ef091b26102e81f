/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/scheme"
)

const (
	aadGroup     = "aadpodidentity.k8s.io"
	nmiName      = "acrpull-nmi"
	federationID = "22222222-2222-2222-2222-222222222222"
	spID         = "33333333-3333-3333-3333-333333333333"
	tenantID     = "72f988bf-86f1-41af-91ab-2d7cd011db47"
)

// podIdentityValues sets every podIdentity value away from its default, with identities in namespace apps.
func podIdentityValues(apps string, secretNames ...string) string {
	v := `
allowedAuthorityHosts: [login.airgap.example, "https://adfs.airgap.example/adfs/"]
podIdentity:
  enabled: true
  nmiPort: 2600
  probePort: 8086
  metricsPort: 9091
  metadataHeaderRequired: false
  blockInstanceMetadata: true
  maxConcurrentRequestsPerPod: 4
  setRetryAfterHeader: true
  forceNamespaced: true
  operationMode: managed
  tokenSource: federation
  serviceAccountTokenAudience: api://CustomExchange
  tenantID: ` + tenantID + `
  cloud: USGovernmentCloud
  authorityHost: https://login.microsoftonline.us/
  enableConntrackDeletion: true
  allowNetworkPluginKubenet: true
  iptablesMode: legacy
  iptUpdateIntervalSec: 30
  hostTokenAudiences: [csi.example, https://kubernetes.default.svc]
  logLevel: debug
  allowCrossNamespaceSecrets: true
  customUserAgent: contoso-aks/1.0
  extraArgs: [--redirect=true]
  extraEnv: [{name: HTTPS_PROXY, value: "http://proxy:3128"}]
  priorityClassName: system-cluster-critical
  azureIdentities:
    web:
      namespace: ` + apps + `
      type: 0
      resourceID: /subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/web
      clientID: ` + federationID + `
      binding: {name: web-binding, selector: web}
    sp:
      namespace: ` + apps + `
      type: 1
      clientID: ` + spID + `
      tenantID: ` + tenantID + `
      clientPassword: {name: sp-secret}
      binding: {name: sp-binding, selector: sp}
`
	if len(secretNames) > 0 {
		v += "  secretNames: [" + strings.Join(secretNames, ", ") + "]\n"
	}
	return v
}

// isPodIdentityObject says whether an object belongs to the node agent: its kinds, its names, its API group.
func isPodIdentityObject(o *unstructured.Unstructured) bool {
	return strings.HasPrefix(o.GetAPIVersion(), aadGroup+"/") || strings.HasSuffix(o.GetName(), "."+aadGroup) ||
		strings.Contains(o.GetName(), "nmi") || o.GetKind() == "DaemonSet"
}

// Disabled (the default), nothing of the node agent renders: no DaemonSet, RBAC, exception or CRD; deploy/latest is
// rendered this way.
func TestPodIdentityDisabledRendersNothing(t *testing.T) {
	for name, flags := range map[string][]string{
		"defaults":             nil,
		"deploy/latest":        {"--set", "namespace=msi-acrpull-system", "--set", "createNamespace=true"},
		"values set, disabled": {"-f", valuesFile(t, podIdentityValues("apps", "sp-secret")), "--set", "podIdentity.enabled=false"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			for _, o := range mustTemplate(t, flags...) {
				g.Expect(isPodIdentityObject(o)).To(BeFalse(), "%s %s rendered", o.GetKind(), o.GetName())
				if o.GetKind() == "Namespace" {
					g.Expect(o.GetLabels()).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "restricted"))
				}
			}
		})
	}
}

func TestPodIdentityRendersTheNodeAgent(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, "--set", "createNamespace=true", "-f", valuesFile(t, podIdentityValues("apps", "sp-secret", "other-sp-secret")))
	var got []string
	for _, o := range objs {
		if isPodIdentityObject(o) {
			got = append(got, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
		}
	}
	g.Expect(got).To(ConsistOf(
		"CustomResourceDefinition//azureidentities.aadpodidentity.k8s.io",
		"CustomResourceDefinition//azureidentitybindings.aadpodidentity.k8s.io",
		"CustomResourceDefinition//azureassignedidentities.aadpodidentity.k8s.io",
		"CustomResourceDefinition//azurepodidentityexceptions.aadpodidentity.k8s.io",
		"ServiceAccount/acrpull/acrpull-nmi",
		"ClusterRole//acrpull-nmi",
		"ClusterRoleBinding//acrpull-nmi",
		"ValidatingAdmissionPolicy//acrpull-nmi-token-request",
		"ValidatingAdmissionPolicyBinding//acrpull-nmi-token-request",
		"DaemonSet/acrpull/acrpull-nmi",
		"AzurePodIdentityException/acrpull/acrpull-controller",
		"AzurePodIdentityException/kube-system/aks-addon-exception",
		"AzureIdentity/apps/web",
		"AzureIdentityBinding/apps/web-binding",
		"AzureIdentity/apps/sp",
		"AzureIdentityBinding/apps/sp-binding",
	))

	ds := mustFind[appsv1.DaemonSet](t, objs, "DaemonSet", nmiName)
	pod := ds.Spec.Template.Spec
	g.Expect(ds.Spec.Selector.MatchLabels).To(HaveKeyWithValue("app.kubernetes.io/name", nmiName))
	for k, v := range ds.Spec.Selector.MatchLabels {
		g.Expect(ds.Spec.Template.Labels).To(HaveKeyWithValue(k, v))
	}
	g.Expect(pod.ServiceAccountName).To(Equal(nmiName))
	g.Expect(pod.HostNetwork).To(BeTrue())
	g.Expect(pod.DNSPolicy).To(Equal(corev1.DNSClusterFirstWithHostNet))
	g.Expect(pod.PriorityClassName).To(Equal("system-cluster-critical"))
	g.Expect(pod.NodeSelector).To(Equal(map[string]string{"kubernetes.io/os": "linux"}))
	g.Expect(pod.Tolerations).To(Equal([]corev1.Toleration{{Operator: corev1.TolerationOpExists}}), "every taint, by default")
	g.Expect(pod.Containers).To(HaveLen(1))
	c := pod.Containers[0]
	g.Expect(c.Image).To(Equal("ghcr.io/acrpull/acrpull:v0.1.0"), "the controller's image")
	g.Expect(c.Command).To(Equal([]string{"/acrpull-nmi"}))
	g.Expect(c.Args).To(ConsistOf(
		"--nmi-port=2600", "--http-probe-port=8086", "--prometheus-port=9091",
		"--metadata-header-required=false", "--block-instance-metadata=true", "--max-concurrent-requests-per-pod=4", "--set-retry-after-header=true",
		"--forceNamespaced=true", "--operation-mode=managed", "--token-source=federation",
		"--service-account-token-audience=api://CustomExchange", "--tenant-id="+tenantID, "--cloud=USGovernmentCloud",
		"--authority-host=https://login.microsoftonline.us/", "--enable-conntrack-deletion=true",
		"--allowed-authority-hosts=login.airgap.example,https://adfs.airgap.example/adfs/", "--allow-cross-namespace-secrets=true",
		"--allow-network-plugin-kubenet=true", "--iptables-mode=legacy", "--ipt-update-interval-sec=30", "--host-token-audiences=csi.example,https://kubernetes.default.svc",
		"--zap-log-level=debug", "--custom-user-agent=contoso-aks/1.0", "--redirect=true"))
	g.Expect(c.Args[len(c.Args)-1]).To(Equal("--redirect=true"), "extra arguments come last, so they win")
	g.Expect(c.Env).To(ConsistOf(
		corev1.EnvVar{Name: "NODE_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.nodeName"}}},
		corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy:3128"}))
	g.Expect(c.Ports).To(ConsistOf(
		corev1.ContainerPort{Name: "metrics", ContainerPort: 9091, Protocol: corev1.ProtocolTCP},
		corev1.ContainerPort{Name: "health", ContainerPort: 8086, Protocol: corev1.ProtocolTCP}))
	g.Expect(c.LivenessProbe.HTTPGet.Path).To(Equal("/healthz"))
	g.Expect(c.LivenessProbe.HTTPGet.Port).To(Equal(intstr.FromString("health")))
	g.Expect(c.ReadinessProbe.HTTPGet.Path).To(Equal("/readyz"))
	g.Expect(c.ReadinessProbe.HTTPGet.Port).To(Equal(intstr.FromString("health")))
	g.Expect(c.Resources.Requests).NotTo(BeEmpty())
	g.Expect(c.Resources.Limits).NotTo(BeEmpty())
	sc := c.SecurityContext
	g.Expect(sc.RunAsUser).To(HaveValue(BeEquivalentTo(0)), "iptables runs as root")
	g.Expect(sc.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL"}))
	g.Expect(sc.Capabilities.Add).To(ConsistOf(corev1.Capability("NET_ADMIN"), corev1.Capability("NET_RAW")))
	g.Expect(sc.Privileged).To(HaveValue(BeFalse()))
	g.Expect(sc.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	g.Expect(sc.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(sc.SeccompProfile.Type).To(Equal(corev1.SeccompProfileTypeRuntimeDefault))

	// The exception covers the controller's pods, in the controller's namespace, and not the agent's own.
	d := mustFind[appsv1.Deployment](t, objs, "Deployment", "acrpull")
	ex := mustFind[aadv1.AzurePodIdentityException](t, objs, "AzurePodIdentityException", "acrpull-controller")
	g.Expect(ex.Namespace).To(Equal(d.Namespace))
	g.Expect(ex.Spec.PodLabels).NotTo(BeEmpty())
	controllerPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Labels: d.Spec.Template.Labels}}
	agentPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ds.Namespace, Labels: ds.Spec.Template.Labels}}
	for k, v := range ex.Spec.PodLabels {
		g.Expect(controllerPod.Labels).To(HaveKeyWithValue(k, v))
		g.Expect(agentPod.Labels).NotTo(HaveKeyWithValue(k, v), "an exception matches on any one label")
	}
	g.Expect(ex.Annotations).To(HaveKeyWithValue("helm.sh/hook", "post-install,post-upgrade"))

	web := mustFind[aadv1.AzureIdentity](t, objs, "AzureIdentity", "web")
	g.Expect(web.Spec.Type).To(Equal(aadv1.UserAssignedMSI))
	g.Expect(web.Spec.ClientID).To(Equal(federationID))
	g.Expect(web.Spec.ResourceID).To(HaveSuffix("/userAssignedIdentities/web"))
	sp := mustFind[aadv1.AzureIdentity](t, objs, "AzureIdentity", "sp")
	g.Expect(sp.Spec.Type).To(Equal(aadv1.ServicePrincipal))
	g.Expect(sp.Spec.ClientPassword.Name).To(Equal("sp-secret"))
	g.Expect(sp.Spec.TenantID).To(Equal(tenantID))
	b := mustFind[aadv1.AzureIdentityBinding](t, objs, "AzureIdentityBinding", "web-binding")
	g.Expect(b.Spec).To(HaveField("AzureIdentity", "web"))
	g.Expect(b.Spec).To(HaveField("Selector", "web"))

	role := mustFind[rbacv1.ClusterRole](t, objs, "ClusterRole", nmiName)
	g.Expect(role.Rules).To(ContainElement(rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"},
		ResourceNames: []string{"sp-secret", "other-sp-secret"}, Verbs: []string{"get"}}))
	for _, r := range role.Rules {
		g.Expect(r.Verbs).NotTo(ContainElements("*", "delete", "deletecollection", "update"), "%v", r)
		g.Expect(r.Resources).NotTo(ContainElement("*"), "%v", r)
	}
	crb := mustFind[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", nmiName)
	g.Expect(crb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: nmiName, Namespace: chartNamespace}))

	ns := mustFind[corev1.Namespace](t, objs, "Namespace", chartNamespace)
	g.Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "privileged"))
	g.Expect(ns.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/warn", "restricted"))

	// Allowed on kubenet, the agent reads nothing of the node's; by default it reads the kubelet's flags and the CNI
	// configuration, through read-only mounts of their host directories.
	for _, v := range pod.Volumes {
		g.Expect(v.HostPath == nil || v.HostPath.Path == "/run/xtables.lock").To(BeTrue(), "volume %s", v.Name)
	}
	ds = mustFind[appsv1.DaemonSet](t, mustTemplate(t, "--set", "podIdentity.enabled=true"), "DaemonSet", nmiName)
	c = ds.Spec.Template.Spec.Containers[0]
	g.Expect(c.Args).To(ContainElements("--allow-network-plugin-kubenet=false",
		"--kubelet-config=/host/etc/default/kubelet", "--cni-config-dir=/host/etc/cni/net.d"))
	hostPaths := map[string]string{}
	for _, v := range ds.Spec.Template.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]string{} // container path → host path, read-only mounts only
	for _, m := range c.VolumeMounts {
		if hostPath, ok := hostPaths[m.Name]; ok && m.ReadOnly {
			mounted[m.MountPath] = hostPath
		}
	}
	g.Expect(mounted).To(HaveKeyWithValue("/host/etc/default", "/etc/default"))
	g.Expect(mounted).To(HaveKeyWithValue("/host/etc/cni/net.d", "/etc/cni/net.d"))

	// Without secretNames, get on any Secret, and still nothing more.
	role = mustFind[rbacv1.ClusterRole](t, mustTemplate(t, "--set", "podIdentity.enabled=true"), "ClusterRole", nmiName)
	g.Expect(role.Rules).To(ContainElement(rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}))
	// Without installControllerException and aksAddonException, no exception.
	g.Expect(ofKind(mustTemplate(t, "--set", "podIdentity.enabled=true", "--set", "podIdentity.installControllerException=false",
		"--set", "podIdentity.aksAddonException=false"), "AzurePodIdentityException")).To(BeEmpty())
}

// The DaemonSet's arguments are flags the agent defines and accepts: it exits 2 on a bad flag or value, before it
// looks for a cluster (and exits 1 for want of one).
func TestPodIdentityArgsParseInTheAgent(t *testing.T) {
	for name, flags := range map[string][]string{
		"defaults":        {"--set", "podIdentity.enabled=true"},
		"every value set": {"-f", valuesFile(t, podIdentityValues("apps"))},
	} {
		t.Run(name, func(t *testing.T) {
			ds := mustFind[appsv1.DaemonSet](t, mustTemplate(t, flags...), "DaemonSet", nmiName)
			c := ds.Spec.Template.Spec.Containers[0]
			out, code := runAgentWithoutCluster(t, c.Args...)
			if code == 2 {
				t.Fatalf("the agent rejected the chart's arguments %q:\n%s", c.Args, out)
			}
			if strings.Contains(out, "kubenet") {
				t.Fatalf("the agent took this machine for a kubenet node:\n%s", out)
			}
		})
	}
}

// With the chart's default arguments the agent refuses to start on a node whose CNI configuration is the bridge
// plugin (kubenet), before it looks for a cluster, and says why; allowed, it goes on.
func TestPodIdentityAgentRefusesKubenetNodes(t *testing.T) {
	cniDir := t.TempDir()
	bridge := `{"cniVersion":"0.3.1","name":"kubenet","plugins":[{"type":"bridge","bridge":"cbr0"},{"type":"portmap"}]}`
	if err := os.WriteFile(filepath.Join(cniDir, "10-containerd-net.conflist"), []byte(bridge), 0o600); err != nil {
		t.Fatal(err)
	}
	args := mustFind[appsv1.DaemonSet](t, mustTemplate(t, "--set", "podIdentity.enabled=true"), "DaemonSet", nmiName).Spec.Template.Spec.Containers[0].Args
	// The node's configuration as a test directory: a later flag wins over the chart's.
	args = append(slices.Clone(args), "--cni-config-dir="+cniDir)
	if out, code := runAgentWithoutCluster(t, args...); code != 1 || !strings.Contains(out, "Refusing to run on a kubenet node") ||
		!strings.Contains(out, "10-containerd-net.conflist") {
		t.Fatalf("the agent should refuse a bridge node (exit 1) and name the file; exit %d:\n%s", code, out)
	}
	if out, code := runAgentWithoutCluster(t, append(args, "--allow-network-plugin-kubenet=true")...); code != 1 ||
		strings.Contains(out, "kubenet") || !strings.Contains(out, "kubeconfig") {
		t.Fatalf("allowed, the agent should go on to look for its cluster; exit %d:\n%s", code, out)
	}
}

// runAgentWithoutCluster runs the node agent with args and a kubeconfig that does not exist, so it stops where it
// would first need a cluster (exit 1) unless something before stops it; it returns the output and the exit code.
func runAgentWithoutCluster(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(programBinary(t, "acrpull-nmi"), append(slices.Clone(args), "--kubeconfig="+filepath.Join(t.TempDir(), "absent"))...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "NODE_NAME=node-a"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("the agent should stop for want of a cluster; got %v\n%s", err, out)
	}
	return string(out), exit.ExitCode()
}

// podIdentityInstall is the chart, with the node agent, created on the test apiserver, and a client holding the
// agent's own service-account token.
type podIdentityInstall struct {
	release, ns, apps string
	objs              []*unstructured.Unstructured
	agent             client.WithWatch
}

// installPodIdentity renders the chart with podIdentityValues and creates every object on the apiserver: the CRDs
// (which the test apiserver already serves, from config/crd/bases) with a server-side dry-run apply, the rest for
// real, in the order helm renders them.
func installPodIdentity(t *testing.T, secretNames ...string) *podIdentityInstall {
	t.Helper()
	g := NewWithT(t)
	ctx := context.Background()
	w := &podIdentityInstall{release: fresh("pod-identity"), ns: fresh("acrpull-pi"), apps: fresh("pi-apps")}
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.apps}})).To(Succeed())
	out, err := template(w.release, "--set", "namespace="+w.ns, "--set", "createNamespace=true",
		"-f", valuesFile(t, podIdentityValues(w.apps, secretNames...)))
	g.Expect(err).NotTo(HaveOccurred())
	w.objs = mustDecode(t, out)
	for _, obj := range w.objs {
		if obj.GetKind() == "CustomResourceDefinition" {
			g.Expect(env.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("acrpull-chart-test"),
				client.ForceOwnership, client.DryRunAll)).To(Succeed(), "CRD %s", obj.GetName())
			continue
		}
		err := env.Client.Create(ctx, obj)
		if obj.GetNamespace() == "kube-system" && apierrors.IsAlreadyExists(err) {
			continue // every release renders aks-addon-exception alike, and this apiserver is shared
		}
		g.Expect(err).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}

	tr := &authenticationv1.TokenRequest{}
	g.Expect(env.Client.SubResource("token").Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: nmiName}}, tr)).To(Succeed())
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	w.agent, err = client.NewWithWatch(cfg, client.Options{Scheme: scheme.New()})
	g.Expect(err).NotTo(HaveOccurred())
	// RBAC takes effect a moment after the ClusterRoleBinding is created.
	g.Eventually(func() error {
		return w.agent.List(ctx, &corev1.PodList{})
	}).WithTimeout(activationWindow).Should(Succeed(), "the chart's ClusterRole should let the agent list pods")
	return w
}

// The node agent's objects, as rendered, are accepted by a real apiserver: the identities by the CRDs' schemas and
// CEL rules, the DaemonSet's pod by Pod Security admission in the Namespace the chart labels for it (and refused in
// a "restricted" one).
func TestPodIdentityObjectsApply(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	w := installPodIdentity(t)

	ex := &aadv1.AzurePodIdentityException{}
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: w.ns, Name: "acrpull-controller"}, ex)).To(Succeed())
	ids := &aadv1.AzureIdentityList{}
	g.Expect(env.Client.List(ctx, ids, client.InNamespace(w.apps))).To(Succeed())
	g.Expect(ids.Items).To(HaveLen(2))

	ds := mustFind[appsv1.DaemonSet](t, w.objs, "DaemonSet", nmiName)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "nmi-node-a"}, Spec: *ds.Spec.Template.Spec.DeepCopy()}
	g.Expect(env.Client.Create(ctx, pod)).To(Succeed())

	restricted := fresh("pi-restricted")
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restricted,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: nmiName}})).To(Succeed())
	bad := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: "nmi-node-a"}, Spec: *pod.Spec.DeepCopy()}
	g.Expect(env.Client.Create(ctx, bad)).To(MatchError(ContainSubstring(`violates PodSecurity "restricted`)))
}

// The agent's ClusterRole, exercised with the agent's own service-account token: what the agent does is allowed;
// listing or watching Secrets, writing pods and deleting anything are not.
func TestPodIdentityAgentRBAC(t *testing.T) {
	for _, tc := range []struct {
		name        string
		secretNames []string
	}{
		{"any secret by name", nil},
		{"secretNames", []string{"sp-secret"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testAgentRBAC(t, installPodIdentity(t, tc.secretNames...), tc.secretNames != nil)
		})
	}
}

func testAgentRBAC(t *testing.T, w *podIdentityInstall, restricted bool) {
	g := NewWithT(t)
	ctx := context.Background()
	for _, name := range []string{"sp-secret", "unrelated"} {
		g.Expect(env.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: name},
			StringData: map[string]string{"clientSecret": "s3cr3t"}})).To(Succeed())
	}
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "app"}})).To(Succeed())
	appPod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "app", Labels: map[string]string{aadv1.PodLabel: "web"}},
		Spec: corev1.PodSpec{ServiceAccountName: "app", NodeName: "node-a", Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	g.Expect(env.Client.Create(ctx, appPod)).To(Succeed())

	t.Run("allowed", func(t *testing.T) {
		t.Run("get the Secret an identity names", func(t *testing.T) {
			g := NewWithT(t)
			s := &corev1.Secret{}
			g.Expect(w.agent.Get(ctx, types.NamespacedName{Namespace: w.apps, Name: "sp-secret"}, s)).To(Succeed())
			g.Expect(s.Data).To(HaveKey("clientSecret"))
		})
		t.Run("read this node's pods, and one pod live", func(t *testing.T) {
			g := NewWithT(t)
			pods := &corev1.PodList{}
			g.Expect(w.agent.List(ctx, pods, client.MatchingFields{"spec.nodeName": "node-a"})).To(Succeed())
			g.Expect(pods.Items).NotTo(BeEmpty())
			g.Expect(w.agent.Get(ctx, client.ObjectKeyFromObject(appPod), &corev1.Pod{})).To(Succeed())
			watch, err := w.agent.Watch(ctx, &corev1.PodList{}, client.MatchingFields{"spec.nodeName": "node-a"})
			g.Expect(err).NotTo(HaveOccurred())
			watch.Stop()
		})
		t.Run("read the pod identity objects", func(t *testing.T) {
			g := NewWithT(t)
			for _, list := range []client.ObjectList{&aadv1.AzureIdentityList{}, &aadv1.AzureIdentityBindingList{},
				&aadv1.AzurePodIdentityExceptionList{}, &aadv1.AzureAssignedIdentityList{}} {
				g.Expect(w.agent.List(ctx, list)).To(Succeed(), "%T", list)
				watch, err := w.agent.Watch(ctx, list)
				g.Expect(err).NotTo(HaveOccurred(), "%T", list)
				watch.Stop()
			}
			g.Expect(w.agent.Get(ctx, types.NamespacedName{Namespace: w.apps, Name: "web"}, &aadv1.AzureIdentity{})).To(Succeed())
		})
		t.Run("request a token bound to a pod, and review it", func(t *testing.T) {
			g := NewWithT(t)
			tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
				Audiences: []string{"api://CustomExchange"}, ExpirationSeconds: ptrTo(int64(600)),
				BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: appPod.Name, UID: appPod.UID},
			}}
			g.Expect(w.agent.SubResource("token").Create(ctx,
				&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "app"}}, tr)).To(Succeed())
			g.Expect(tr.Status.Token).NotTo(BeEmpty())
			review := &authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{
				Token: tr.Status.Token, Audiences: []string{"api://CustomExchange"}}}
			g.Expect(w.agent.Create(ctx, review)).To(Succeed())
			g.Expect(review.Status.Authenticated).To(BeTrue(), "%+v", review.Status)
			g.Expect(review.Status.User.Username).To(Equal("system:serviceaccount:" + w.apps + ":app"))
			g.Expect(review.Status.User.Extra).To(HaveKeyWithValue("authentication.kubernetes.io/pod-name",
				authenticationv1.ExtraValue{appPod.Name}))
		})
		t.Run("record events", func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(w.agent.Create(ctx, &eventsv1.Event{
				ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "web-binding.acrpull-nmi-test"},
				EventTime:  metav1.NowMicro(), ReportingController: "acrpull-nmi", ReportingInstance: "acrpull-nmi-node-a",
				Action: "IssueToken", Reason: "TokenFailed", Type: corev1.EventTypeWarning, Note: "example",
				Regarding: corev1.ObjectReference{APIVersion: "aadpodidentity.k8s.io/v1", Kind: "AzureIdentityBinding",
					Namespace: w.apps, Name: "web-binding"},
			})).To(Succeed())
			g.Expect(w.agent.Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{Namespace: w.apps, Name: "app.acrpull-nmi-test"},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: w.apps, Name: appPod.Name},
				Reason:         "TokenFailed", Message: "example", Type: corev1.EventTypeWarning,
			})).To(Succeed())
		})
	})

	t.Run("denied by RBAC", func(t *testing.T) {
		denied := map[string]func() error{
			"list secrets in a namespace": func() error {
				return w.agent.List(ctx, &corev1.SecretList{}, client.InNamespace(w.apps))
			},
			"list secrets cluster-wide": func() error { return w.agent.List(ctx, &corev1.SecretList{}) },
			"list secret metadata": func() error {
				list := &metav1.PartialObjectMetadataList{}
				list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
				return w.agent.List(ctx, list, client.InNamespace(w.apps))
			},
			"watch secrets": func() error {
				watch, err := w.agent.Watch(ctx, &corev1.SecretList{}, client.InNamespace(w.apps))
				if err == nil {
					watch.Stop()
				}
				return err
			},
			"watch one secret by name": func() error {
				watch, err := w.agent.Watch(ctx, &corev1.SecretList{}, client.InNamespace(w.apps),
					client.MatchingFields{"metadata.name": "sp-secret"})
				if err == nil {
					watch.Stop()
				}
				return err
			},
			"create a secret": func() error {
				return w.agent.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "made-by-agent"}})
			},
			"update a secret": func() error {
				s := &corev1.Secret{}
				if err := env.Client.Get(ctx, types.NamespacedName{Namespace: w.apps, Name: "sp-secret"}, s); err != nil {
					return err
				}
				return w.agent.Update(ctx, s)
			},
			"update a pod": func() error {
				p := &corev1.Pod{}
				if err := env.Client.Get(ctx, client.ObjectKeyFromObject(appPod), p); err != nil {
					return err
				}
				p.Labels[aadv1.PodLabel] = "sp"
				return w.agent.Update(ctx, p)
			},
			"patch a pod": func() error {
				p := appPod.DeepCopy()
				return w.agent.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"aadpodidbinding":"sp"}}}`)))
			},
			"create a pod": func() error {
				return w.agent.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "made-by-agent"},
					Spec: corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "c", Image: "c"}}}})
			},
			"create an AzureIdentity": func() error {
				return w.agent.Create(ctx, &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "made-by-agent"},
					Spec: aadv1.AzureIdentitySpec{ClientID: federationID}})
			},
			"update an AzureIdentity": func() error {
				id := &aadv1.AzureIdentity{}
				if err := env.Client.Get(ctx, types.NamespacedName{Namespace: w.apps, Name: "web"}, id); err != nil {
					return err
				}
				id.Spec.ClientID = spID
				return w.agent.Update(ctx, id)
			},
			"create an AzureAssignedIdentity": func() error {
				return w.agent.Create(ctx, &aadv1.AzureAssignedIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "made-by-agent"}})
			},
			"create a service account": func() error {
				return w.agent.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "made-by-agent"}})
			},
			"read a ConfigMap": func() error {
				return w.agent.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(w.ns))
			},
			"read nodes": func() error { return w.agent.List(ctx, &corev1.NodeList{}) },
		}
		if restricted {
			denied["get a Secret not in secretNames"] = func() error {
				return w.agent.Get(ctx, types.NamespacedName{Namespace: w.apps, Name: "unrelated"}, &corev1.Secret{})
			}
		}
		// Delete anything: every kind the agent can read or create.
		for _, obj := range []client.Object{
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "sp-secret"}},
			appPod.DeepCopy(),
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "app"}},
			&aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "web"}},
			&aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "web-binding"}},
			&aadv1.AzurePodIdentityException{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: "acrpull-controller"}},
			&eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "web-binding.acrpull-nmi-test"}},
			&corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: w.apps, Name: "app.acrpull-nmi-test"}},
			&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: w.ns, Name: nmiName}},
			&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: w.release + "-nmi"}},
		} {
			kind := strings.TrimPrefix(typeName(obj), "/")
			denied["delete "+kind] = func() error { return w.agent.Delete(ctx, obj) }
		}
		denied["delete all pods"] = func() error {
			return w.agent.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(w.apps))
		}
		denied["delete all AzureIdentities"] = func() error {
			return w.agent.DeleteAllOf(ctx, &aadv1.AzureIdentity{}, client.InNamespace(w.apps))
		}
		for name, call := range denied {
			t.Run(name, func(t *testing.T) {
				g := NewWithT(t)
				err := call()
				g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
			})
		}
	})
}

func typeName(obj runtime.Object) string {
	gvks, _, err := scheme.New().ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return "unknown"
	}
	return gvks[0].Group + "/" + gvks[0].Kind
}

// Upgrading from aad-pod-identity, as the README says: its CRDs (installed from its chart's crds/ directory, so owned
// by no release) are adopted with helm's ownership labels and annotations. A CRD the cluster does not have yet is
// created by the release, and the chart's AzurePodIdentityException (a hook) is created after it.
func TestPodIdentityHelmInstallAdoptsCRDs(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release := fresh("acrpull-adopt")
	ns := release
	crdClient, err := client.New(env.Config, client.Options{Scheme: crdScheme()})
	g.Expect(err).NotTo(HaveOccurred())

	// One CRD absent (a fresh install of that kind), the other five adopted.
	absent := &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: "azurepodidentityexceptions." + aadGroup}}
	g.Expect(client.IgnoreNotFound(crdClient.Delete(ctx, absent))).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(crdClient.Get(ctx, client.ObjectKeyFromObject(absent), absent))
	}).WithTimeout(activationWindow).Should(BeTrue())
	for _, name := range []string{"azureidentities", "azureidentitybindings", "azureassignedidentities"} {
		adopt(t, crdClient, name+"."+aadGroup, release, ns)
	}
	adopt(t, crdClient, "acrpullbindings.acrpull.microsoft.com", release, ns)
	adopt(t, crdClient, "acrpullbindings.msi-acrpull.microsoft.com", release, ns)

	base := []string{"--kubeconfig", env.KubeconfigPath, "--namespace", ns, "--set", "namespace=" + ns}
	_, err = helm(append([]string{"install", release, chartDir, "--create-namespace", "--set", "podIdentity.enabled=true"}, base...)...)
	g.Expect(err).NotTo(HaveOccurred())
	crd := &apiextensionsv1.CustomResourceDefinition{}
	g.Expect(crdClient.Get(ctx, client.ObjectKeyFromObject(absent), crd)).To(Succeed())
	g.Expect(crd.Annotations).To(HaveKeyWithValue("meta.helm.sh/release-name", release))
	g.Expect(crd.Annotations).To(HaveKeyWithValue("helm.sh/resource-policy", "keep"))
	g.Eventually(func() error {
		return env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "acrpull-controller"}, &aadv1.AzurePodIdentityException{})
	}).WithTimeout(activationWindow).Should(Succeed())
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: nmiName}, &appsv1.DaemonSet{})).To(Succeed())

	// An upgrade replaces the hook; the release stays healthy.
	_, err = helm(append([]string{"upgrade", release, chartDir, "--set", "podIdentity.enabled=true", "--set", "podIdentity.logLevel=debug"}, base...)...)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: "acrpull-controller"}, &aadv1.AzurePodIdentityException{})).To(Succeed())

	// Uninstall removes the agent and leaves the CRDs (crds.keep), so the cluster's identities survive.
	_, err = helm("uninstall", release, "--kubeconfig", env.KubeconfigPath, "--namespace", ns, "--wait", "--timeout", "30s")
	g.Expect(err).NotTo(HaveOccurred())
	err = env.Client.Get(ctx, types.NamespacedName{Name: release + "-nmi"}, &rbacv1.ClusterRole{})
	g.Expect(apierrors.IsNotFound(err)).To(BeTrue(), "ClusterRole left after uninstall: %v", err)
	g.Expect(crdClient.Get(ctx, client.ObjectKeyFromObject(absent), crd)).To(Succeed())
}

// adopt labels and annotates a CRD so helm takes it into release (README, "Pod identity").
func adopt(t *testing.T, c client.Client, name, release, namespace string) {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, crd); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(crd.DeepCopy())
	metav1.SetMetaDataLabel(&crd.ObjectMeta, "app.kubernetes.io/managed-by", "Helm")
	metav1.SetMetaDataAnnotation(&crd.ObjectMeta, "meta.helm.sh/release-name", release)
	metav1.SetMetaDataAnnotation(&crd.ObjectMeta, "meta.helm.sh/release-namespace", namespace)
	if err := c.Patch(context.Background(), crd, patch); err != nil {
		t.Fatal(err)
	}
}

func crdScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = apiextensionsv1.AddToScheme(s)
	return s
}
