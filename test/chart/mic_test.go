/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/mic"
	"github.com/acrpull/acrpull/internal/scheme"
)

const (
	micName     = "acrpull-mic"
	immutableID = "55555555-5555-5555-5555-555555555555"
)

// micValues enables the node agent and the assignment controller with every MIC value away from its default.
func micValues() string {
	return `
podIdentity:
  enabled: true
  forceNamespaced: true
  mic:
    enabled: true
    replicas: 3
    azureConfigSecret: mic-azure-config
    azureConfigSecretKey: cloud.json
    leaderElectionDuration: 30s
    identityAssignmentReconcileInterval: 5m
    immutableUserMSIs: [` + immutableID + `]
    updateUserMSIMaxRetry: 4
    clientQPS: 20
    probePort: 8081
    metricsPort: 8889
    enableTypeUpgrade: false
    customUserAgent: aks-addon
    logLevel: debug
    extraArgs: [--leader-elect=true]
    extraEnv: [{name: HTTPS_PROXY, value: "http://proxy:3128"}]
    priorityClassName: system-cluster-critical
`
}

func isMICObject(o *unstructured.Unstructured) bool {
	return strings.Contains(o.GetName(), "-mic") || o.GetLabels()["app.kubernetes.io/name"] == micName
}

// Off by default, and off unless asked for with the node agent on: nothing of the assignment controller renders,
// and deploy/latest does not change.
func TestMICDisabledRendersNothing(t *testing.T) {
	for name, flags := range map[string][]string{
		"defaults":              nil,
		"deploy/latest":         {"--set", "namespace=msi-acrpull-system", "--set", "createNamespace=true"},
		"node agent only":       {"--set", "podIdentity.enabled=true"},
		"mic values, disabled":  {"-f", valuesFile(t, micValues()), "--set", "podIdentity.mic.enabled=false"},
		"installException only": {"--set", "podIdentity.enabled=true", "--set", "podIdentity.mic.installException=true"},
	} {
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			for _, o := range mustTemplate(t, flags...) {
				g.Expect(isMICObject(o)).To(BeFalse(), "%s %s rendered", o.GetKind(), o.GetName())
			}
		})
	}
	// Without the node agent the controller has nothing to serve: a clear error, not a silent nothing.
	_, err := template(releaseName, "--set", "podIdentity.mic.enabled=true")
	NewWithT(t).Expect(err).To(MatchError(ContainSubstring("podIdentity.mic.enabled needs podIdentity.enabled")))
}

func TestMICRendersTheController(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, "-f", valuesFile(t, micValues()))
	var got []string
	for _, o := range objs {
		if isMICObject(o) {
			got = append(got, o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName())
		}
	}
	g.Expect(got).To(ConsistOf(
		"ServiceAccount/acrpull/acrpull-mic",
		"ClusterRole//acrpull-mic",
		"ClusterRoleBinding//acrpull-mic",
		"Role/acrpull/acrpull-mic",
		"RoleBinding/acrpull/acrpull-mic",
		"Deployment/acrpull/acrpull-mic",
		"AzurePodIdentityException/acrpull/acrpull-mic",
	))

	d := mustFind[appsv1.Deployment](t, objs, "Deployment", micName)
	g.Expect(d.Spec.Replicas).To(HaveValue(BeEquivalentTo(3)))
	g.Expect(d.Spec.Selector.MatchLabels).To(HaveKeyWithValue("app.kubernetes.io/name", micName))
	for k, v := range d.Spec.Selector.MatchLabels {
		g.Expect(d.Spec.Template.Labels).To(HaveKeyWithValue(k, v))
	}
	pod := d.Spec.Template.Spec
	g.Expect(pod.ServiceAccountName).To(Equal(micName))
	g.Expect(pod.HostNetwork).To(BeFalse())
	g.Expect(pod.PriorityClassName).To(Equal("system-cluster-critical"))
	g.Expect(pod.SecurityContext.RunAsNonRoot).To(HaveValue(BeTrue()))
	c := pod.Containers[0]
	g.Expect(c.Command).To(Equal([]string{"/acrpull-mic"}))
	g.Expect(c.Args).To(ConsistOf(
		"--cloudconfig=/etc/kubernetes/azure.json", "--leader-election-namespace="+chartNamespace,
		"--leader-election-duration=30s", "--identity-assignment-reconcile-interval=5m", "--immutable-user-msis="+immutableID,
		"--forceNamespaced=true", "--update-user-msi-max-retry=4", "--clientQps=20", "--http-probe-port=8081",
		"--prometheus-port=8889", "--enable-type-upgrade=false", "--custom-user-agent=aks-addon", "--zap-log-level=debug",
		"--leader-elect=true"))
	g.Expect(c.Args[len(c.Args)-1]).To(Equal("--leader-elect=true"), "extra arguments come last, so they win")
	g.Expect(c.Env).To(ConsistOf(
		corev1.EnvVar{Name: "MIC_POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		corev1.EnvVar{Name: "HTTPS_PROXY", Value: "http://proxy:3128"}), "azure.json from the Secret: no Azure variables")
	g.Expect(c.Ports).To(ConsistOf(
		corev1.ContainerPort{Name: "metrics", ContainerPort: 8889, Protocol: corev1.ProtocolTCP},
		corev1.ContainerPort{Name: "health", ContainerPort: 8081, Protocol: corev1.ProtocolTCP}))
	sc := c.SecurityContext
	g.Expect(sc.RunAsNonRoot).To(HaveValue(BeTrue()))
	g.Expect(sc.ReadOnlyRootFilesystem).To(HaveValue(BeTrue()))
	g.Expect(sc.AllowPrivilegeEscalation).To(HaveValue(BeFalse()))
	g.Expect(sc.Capabilities.Drop).To(Equal([]corev1.Capability{"ALL"}))
	g.Expect(sc.Capabilities.Add).To(BeEmpty())
	// azure.json: the Secret's key as a file in a directory mount (a subPath would never see the Secret change).
	g.Expect(c.VolumeMounts).To(ContainElement(corev1.VolumeMount{Name: "azure-config", MountPath: "/etc/kubernetes", ReadOnly: true}))
	var vol *corev1.Volume
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == "azure-config" {
			vol = &pod.Volumes[i]
		}
	}
	g.Expect(vol).NotTo(BeNil())
	g.Expect(vol.Secret.SecretName).To(Equal("mic-azure-config"))
	g.Expect(vol.Secret.Items).To(Equal([]corev1.KeyToPath{{Key: "cloud.json", Path: "azure.json"}}))
	g.Expect(vol.Secret.DefaultMode).To(HaveValue(BeEquivalentTo(0o440)))

	// Without the Secret: upstream's variables, the client secret from a Secret reference, and no --cloudconfig.
	d = mustFind[appsv1.Deployment](t, mustTemplate(t, "--set", "podIdentity.enabled=true", "--set", "podIdentity.mic.enabled=true",
		"--set", "podIdentity.mic.azureConfig.cloud=AzureUSGovernmentCloud", "--set", "podIdentity.mic.azureConfig.tenantID="+tenantID,
		"--set", "podIdentity.mic.azureConfig.clientID="+spID, "--set", "podIdentity.mic.azureConfig.clientSecretRef.name=mic-sp",
		"--set", "podIdentity.mic.azureConfig.clientSecretRef.key=secret", "--set", "podIdentity.mic.azureConfig.vmType=vmss"),
		"Deployment", micName)
	c = d.Spec.Template.Spec.Containers[0]
	g.Expect(c.Args).NotTo(ContainElement(HavePrefix("--cloudconfig")))
	g.Expect(c.Env).To(ContainElements(
		corev1.EnvVar{Name: "CLOUD", Value: "AzureUSGovernmentCloud"},
		corev1.EnvVar{Name: "TENANT_ID", Value: tenantID},
		corev1.EnvVar{Name: "CLIENT_ID", Value: spID},
		corev1.EnvVar{Name: "CLIENT_SECRET", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "mic-sp"}, Key: "secret"}}},
		corev1.EnvVar{Name: "VM_TYPE", Value: "vmss"},
		corev1.EnvVar{Name: "USE_MSI", Value: "false"}))
	g.Expect(d.Spec.Template.Spec.Volumes).NotTo(ContainElement(HaveField("Name", "azure-config")))

	// RBAC: nothing on Secrets, no writes but to its records, events, its Lease and its ConfigMap.
	role := mustFind[rbacv1.ClusterRole](t, objs, "ClusterRole", micName)
	for _, r := range role.Rules {
		g.Expect(r.Resources).NotTo(ContainElement("secrets"), "%v", r)
		g.Expect(r.Resources).NotTo(ContainElement("*"), "%v", r)
		g.Expect(r.Verbs).NotTo(ContainElement("*"), "%v", r)
		if slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
			g.Expect(r.Resources).To(Or(Equal([]string{"azureassignedidentities"}), Equal([]string{"events"})), "%v", r)
		}
	}
	crb := mustFind[rbacv1.ClusterRoleBinding](t, objs, "ClusterRoleBinding", micName)
	g.Expect(crb.Subjects).To(ConsistOf(rbacv1.Subject{Kind: "ServiceAccount", Name: micName, Namespace: chartNamespace}))
	ex := mustFind[aadv1.AzurePodIdentityException](t, objs, "AzurePodIdentityException", micName)
	g.Expect(ex.Spec.PodLabels).To(Equal(map[string]string{"app.kubernetes.io/name": micName}))
}

// The Deployment's arguments are flags the controller defines and accepts: it exits 2 on a bad flag or value (a
// lease shorter than the renew deadline included), before it reads its Azure configuration or looks for a cluster.
func TestMICArgsParseInTheController(t *testing.T) {
	bin := programBinary(t, "acrpull-mic")
	for name, flags := range map[string][]string{
		"defaults":        {"--set", "podIdentity.enabled=true", "--set", "podIdentity.mic.enabled=true"},
		"every value set": {"-f", valuesFile(t, micValues())},
	} {
		t.Run(name, func(t *testing.T) {
			d := mustFind[appsv1.Deployment](t, mustTemplate(t, flags...), "Deployment", micName)
			c := d.Spec.Template.Spec.Containers[0]
			cmd := exec.Command(bin, append(slices.Clone(c.Args), "--kubeconfig="+filepath.Join(t.TempDir(), "absent"))...)
			cmd.Env = []string{"HOME=" + t.TempDir(), "MIC_POD_NAMESPACE=acrpull", "USE_MSI=true"}
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("the controller should stop for want of a configuration or cluster; got %v\n%s", err, out)
			}
			if exit.ExitCode() == 2 {
				t.Fatalf("the controller rejected the chart's arguments %q:\n%s", c.Args, out)
			}
		})
	}
	// The control: a bad value does exit 2.
	out, err := exec.Command(bin, "--leader-election-duration=5s").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("a lease shorter than the renew deadline should exit 2: %v\n%s", err, out)
	}
}

// memoryARM is VMs and scale sets in memory: enough for the controller to run its cycles under the chart's RBAC.
type memoryARM struct {
	mu    sync.Mutex
	hosts map[string][]string
}

func (a *memoryARM) HostIdentities(_ context.Context, host string) ([]string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.hosts[host]), nil
}

func (a *memoryARM) UpdateHostIdentities(_ context.Context, host string, _, add, remove []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	ids := slices.DeleteFunc(a.hosts[host], func(id string) bool { return slices.Contains(remove, id) })
	a.hosts[host] = append(ids, add...)
	return nil
}

// The chart's RBAC, exercised with the controller's own service-account token: the real assignment controller runs
// with it (leader election, its cache, a pod's identity assigned and recorded), and so does the type upgrade; reading
// Secrets, writing pods or identities, and other ConfigMaps and Leases are refused.
func TestMICRBAC(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	release, ns, apps := fresh("mic-rbac"), fresh("acrpull-mic"), fresh("mic-apps")
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: apps}})).To(Succeed())
	out, err := template(release, "--set", "namespace="+ns, "--set", "createNamespace=true", "--set", "podIdentity.enabled=true",
		"--set", "podIdentity.mic.enabled=true")
	g.Expect(err).NotTo(HaveOccurred())
	objs := mustDecode(t, out)
	for _, obj := range objs {
		if obj.GetKind() == "CustomResourceDefinition" {
			continue // the test apiserver serves them already
		}
		g.Expect(env.Client.Create(ctx, obj)).To(Succeed(), "%s %s", obj.GetKind(), obj.GetName())
	}
	// The controller's pod passes Pod Security admission in a namespace enforcing "restricted".
	restricted := fresh("mic-restricted")
	g.Expect(env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restricted,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}})).To(Succeed())
	g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: micName}})).To(Succeed())
	d := mustFind[appsv1.Deployment](t, objs, "Deployment", micName)
	g.Expect(env.Client.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: restricted, Name: micName},
		Spec: *d.Spec.Template.Spec.DeepCopy()})).To(Succeed())

	tr := &authenticationv1.TokenRequest{}
	g.Expect(env.Client.SubResource("token").Create(ctx,
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: micName}}, tr)).To(Succeed())
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	as, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() error { return as.List(ctx, &corev1.PodList{}) }).WithTimeout(activationWindow).Should(Succeed(),
		"the chart's ClusterRole should let the controller list pods")

	t.Run("the type upgrade", func(t *testing.T) {
		g := NewWithT(t)
		res, err := mic.UpgradeTypes(ctx, as, as, ns, "chart test")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.Skipped).To(BeFalse())
		res, err = mic.UpgradeTypes(ctx, as, as, ns, "chart test")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.Skipped).To(BeTrue())
	})

	t.Run("the assignment controller", func(t *testing.T) {
		g := NewWithT(t)
		host := "/subscriptions/s/resourceGroups/mc/providers/Microsoft.Compute/virtualMachineScaleSets/" + release
		rid := "/subscriptions/s/resourcegroups/ids/providers/microsoft.managedidentity/userassignedidentities/" + release
		node := release + "-node"
		g.Expect(env.Client.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node},
			Spec: corev1.NodeSpec{ProviderID: "azure://" + host + "/virtualMachines/0"}})).To(Succeed())
		g.Expect(env.Client.Create(ctx, &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "web"},
			Spec: aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: federationID, ResourceID: rid}})).To(Succeed())
		g.Expect(env.Client.Create(ctx, &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "web"},
			Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: "web", Selector: release}})).To(Succeed())
		g.Expect(env.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "default"}})).To(Succeed())
		g.Expect(env.Client.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "web",
			Labels: map[string]string{aadv1.PodLabel: release}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "app"}}}})).To(Succeed())

		arm := &memoryARM{hosts: map[string][]string{}}
		mgr, err := mic.NewManager(cfg, mic.Options{MetricsAddr: "0", ProbeAddr: "0", LeaderElection: true,
			LeaderElectionNamespace: ns, LeaseDuration: 15 * time.Second, ARM: arm, MetricsRegistry: prometheus.NewRegistry(),
			Config: mic.Config{ReconcileInterval: time.Minute, UpdateRetries: 2}})
		g.Expect(err).NotTo(HaveOccurred())
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- mgr.Start(mctx) }()
		defer func() {
			cancel()
			g.Expect(<-done).To(Succeed())
		}()
		g.Eventually(mgr.Elected()).WithTimeout(30 * time.Second).Should(BeClosed())
		rec := &aadv1.AzureAssignedIdentity{}
		g.Eventually(func() string {
			if err := env.Client.Get(ctx, types.NamespacedName{Namespace: mic.DefaultNamespace, Name: mic.AssignedName("web", apps, "web")}, rec); err != nil {
				return err.Error()
			}
			return rec.Status.Status
		}).WithTimeout(30 * time.Second).Should(Equal(aadv1.AssignedIDAssigned))
		ids, _ := arm.HostIdentities(ctx, strings.ToLower(host))
		g.Expect(ids).To(ContainElement(rid))
		lease := &coordinationv1.Lease{}
		g.Expect(env.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: mic.LeaderElectionID}, lease)).To(Succeed())
	})

	t.Run("denied", func(t *testing.T) {
		denied := map[string]func() error{
			"get a secret": func() error {
				return as.Get(ctx, types.NamespacedName{Namespace: apps, Name: "any"}, &corev1.Secret{})
			},
			"list secrets": func() error { return as.List(ctx, &corev1.SecretList{}) },
			"create a pod": func() error {
				return as.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "made-by-mic"},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "c"}}}})
			},
			"patch a pod": func() error {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "web"}}
				return as.Patch(ctx, p, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`)))
			},
			"delete a pod": func() error {
				return as.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "web"}})
			},
			"patch a node": func() error {
				n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: release + "-node"}}
				return as.Patch(ctx, n, client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`)))
			},
			"create an AzureIdentity": func() error {
				return as.Create(ctx, &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "made-by-mic"},
					Spec: aadv1.AzureIdentitySpec{ClientID: federationID}})
			},
			"delete an AzureIdentityBinding": func() error {
				return as.Delete(ctx, &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: "web"}})
			},
			"read another ConfigMap": func() error {
				return as.Get(ctx, types.NamespacedName{Namespace: ns, Name: "kube-root-ca.crt"}, &corev1.ConfigMap{})
			},
			"list ConfigMaps": func() error { return as.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(ns)) },
			"the type upgrade ConfigMap in another namespace": func() error {
				return as.Get(ctx, types.NamespacedName{Namespace: apps, Name: mic.TypeUpgradeConfigMap}, &corev1.ConfigMap{})
			},
			"another Lease": func() error {
				return as.Get(ctx, types.NamespacedName{Namespace: ns, Name: "aks.azure.com"}, &coordinationv1.Lease{})
			},
			"a Lease in another namespace": func() error {
				return as.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: apps, Name: mic.LeaderElectionID}})
			},
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
