/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/registrytest"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/manager"
)

// The world every test runs in: one control plane, one fake Azure cloud, one real registry behind it.
const (
	registryHost = "example.azurecr.io"
	tenantID     = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	// puller may pull "alice" only; nobody may pull "bob" but the registry admin.
	pullerClientID   = "11111111-1111-1111-1111-111111111111"
	pullerResourceID = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/puller"
	// stranger exists and is assigned to the node but has no role on the registry.
	strangerClientID   = "33333333-3333-3333-3333-333333333333"
	strangerResourceID = "/subscriptions/22222222-2222-2222-2222-222222222222/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/stranger"
	// pausedLabel keeps a binding away from the controller under test (it serves only bindings without it).
	pausedLabel   = "acrpull.test/paused"
	tag           = "v1"
	allowedSuffix = "azurecr.io"
	// allowedAuthority is the air-gapped cloud's authority the controller is started with (--allowed-authority-hosts).
	allowedAuthority = "login.airgap.example"
	// sovereignAuthority is another allowed one, for tests that must not share connections with allowedAuthority's
	// (the fake counts requests per host as tunnels are opened, and the controller keeps them open).
	sovereignAuthority = "login.sovereign.example"
)

var (
	env      *testenv.Env
	cloud    *azurefake.Cloud
	registry *registrytest.Registry
	k8s      client.Client
	// controllerCache is what the controller under test sees of the cluster.
	controllerCache client.Reader
	// controllerLog holds everything the controller logged, for the secrecy test.
	controllerLog syncBuffer
	// metricsRegistry holds the controller's own metrics.
	metricsRegistry = prometheus.NewRegistry()
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// Everything the controller logs, at debug level, goes to stderr (shown when the package fails) and to a buffer
	// the secrecy test searches for tokens.
	logf.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(os.Stderr, &controllerLog)), zap.Level(zapcore.DebugLevel)))
	var (
		stop func()
		err  error
	)
	if env, cloud, stop, err = testenv.StartWithCloud(azurefake.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	k8s = env.Client
	if registry, err = registrytest.StartRegistry(cloud, registryHost); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		return 1
	}
	defer registry.Close()
	cloud.AddIdentity(azurefake.Identity{ClientID: pullerClientID, ResourceID: pullerResourceID, PrincipalID: "p-puller", TenantID: tenantID, AssignedToVM: true})
	cloud.AddIdentity(azurefake.Identity{ClientID: strangerClientID, ResourceID: strangerResourceID, PrincipalID: "p-stranger", TenantID: tenantID, AssignedToVM: true})
	cloud.AddRoleAssignment(pullerClientID, registryHost, []string{"alice"}, []string{"pull"})
	ctx := context.Background()
	for _, repo := range []string{"alice", "bob"} {
		if err := registry.PushRandom(ctx, repo, tag); err != nil {
			fmt.Fprintln(os.Stderr, "push:", err)
			return 1
		}
	}

	mgr, err := manager.New(env.Config, manager.Options{
		MetricsAddr:      "0",
		ProbeAddr:        "0",
		Workers:          4,
		AzureHTTPClient:  cloud.HTTPClient(),
		AzureCallTimeout: 3 * time.Second,
		MetricsRegistry:  metricsRegistry,
		Controller: acrpullbinding.Config{
			ServiceAccountTokenAudience: "api://AzureCRTokenExchange",
			ACRAudience:                 "https://containerregistry.azure.net",
			TTLRotationFraction:         0.5,
			VerifyPull:                  true,
			AllowedServerSuffixes:       []string{allowedSuffix, "airgap.example"},
			AuthorityHosts:              mustAuthorityHosts(allowedAuthority, sovereignAuthority),
			// Tests stage "left behind by msi-acrpull" state on paused bindings, then hand them over.
			LabelSelector: labels.SelectorFromSet(nil).Add(*mustRequirement(pausedLabel, selection.NotEquals, "true")),
			V1beta1:       acrpullbinding.V1beta1Defaults{ACRServer: registryHost, ClientID: pullerClientID},
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	controllerCache = mgr.GetCache()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	if code == 0 && testenv.WholeSuite() {
		if err := tokensPublished(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "secrecy scan after the suite:", err)
			code = 1
		} else {
			fmt.Fprintln(os.Stderr, "secrecy scan after the suite: no token in the log, Events or statuses")
		}
	}
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager stopped:", err)
		code = 1
	}
	return code
}

func mustAuthorityHosts(extra ...string) *azauth.AuthorityHosts {
	hosts, err := azauth.NewAuthorityHosts(extra...)
	if err != nil {
		panic(err)
	}
	return hosts
}

func mustRequirement(key string, op selection.Operator, value string) *labels.Requirement {
	r, err := labels.NewRequirement(key, op, []string{value})
	if err != nil {
		panic(err)
	}
	return r
}

// newNamespace makes a namespace for one test.
func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "apb-"}}
	if err := k8s.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// serviceAccount creates an account, optionally federated with an identity (annotated with its IDs).
func serviceAccount(t *testing.T, ns, name string, federatedClientID string, pullSecrets ...string) *corev1.ServiceAccount {
	t.Helper()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	for _, s := range pullSecrets {
		sa.ImagePullSecrets = append(sa.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	if federatedClientID != "" {
		sa.Annotations = map[string]string{
			"azure.workload.identity/client-id": federatedClientID,
			"azure.workload.identity/tenant-id": tenantID,
		}
		cloud.AddFederatedCredential(federatedClientID, azurefake.FederatedCredential{
			Issuer: testenv.Issuer, Subject: "system:serviceaccount:" + ns + ":" + name,
			Audiences: []string{"api://AzureCRTokenExchange"},
		})
	}
	if err := k8s.Create(context.Background(), sa); err != nil {
		t.Fatal(err)
	}
	return sa
}

func managedIdentityBinding(ns, name, target, scope string) *acrv1beta2.AcrPullBinding {
	return &acrv1beta2.AcrPullBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: acrv1beta2.AcrPullBindingSpec{
			ACR:                acrv1beta2.AcrConfiguration{Server: registryHost, Scope: scope, Environment: acrv1beta2.AzureEnvironmentPublicCloud},
			Auth:               acrv1beta2.AuthenticationMethod{ManagedIdentity: &acrv1beta2.ManagedIdentityAuth{ClientID: pullerClientID}},
			ServiceAccountName: target,
		},
	}
}

func workloadIdentityBinding(ns, name, federated, target, scope string) *acrv1beta2.AcrPullBinding {
	b := managedIdentityBinding(ns, name, target, scope)
	b.Spec.Auth = acrv1beta2.AuthenticationMethod{WorkloadIdentity: &acrv1beta2.WorkloadIdentityAuth{ServiceAccountName: federated}}
	return b
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatal(err)
	}
}

// edit changes an object the way a user would: read it, change it, write it, again if the controller wrote in
// between (its status and finalizer patches change the resourceVersion).
func edit(t *testing.T, obj client.Object, change func()) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change()
		return k8s.Update(context.Background(), obj)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// deleteAtEnd deletes a binding when the test ends, so its short-lived tokens stop refreshing under later tests.
func deleteAtEnd(t *testing.T, obj client.Object) {
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
}

// readyCondition fetches a binding and returns its Ready condition (nil while there is none).
func readyCondition(g Gomega, b *acrv1beta2.AcrPullBinding) *metav1.Condition {
	got := &acrv1beta2.AcrPullBinding{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKeyFromObject(b), got)).To(Succeed())
	return meta.FindStatusCondition(got.Status.Conditions, acrv1beta2.ConditionReady)
}

func eventuallyReady(t *testing.T, b *acrv1beta2.AcrPullBinding, status metav1.ConditionStatus, reason string) {
	t.Helper()
	NewWithT(t).Eventually(func(g Gomega) {
		c := readyCondition(g, b)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status), "message: %s", c.Message)
		g.Expect(c.Reason).To(Equal(reason), "message: %s", c.Message)
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
}

func getSecret(g Gomega, ns, name string) *corev1.Secret {
	s := &corev1.Secret{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s)).To(Succeed())
	return s
}

func pullSecretNames(g Gomega, ns, sa string) []string {
	got := &corev1.ServiceAccount{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: sa}, got)).To(Succeed())
	var names []string
	for _, r := range got.ImagePullSecrets {
		names = append(names, r.Name)
	}
	return names
}

// pull proves a dockerconfigjson payload with a real client pull through the fake cloud to the real registry.
func pull(ns, secret, repo string) error {
	s := &corev1.Secret{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: secret}, s); err != nil {
		return err
	}
	return registry.Pull(context.Background(), repo, tag, s.Data[corev1.DockerConfigJsonKey])
}

// warningEvents lists the Warning events about a binding, by reason.
func warningEvents(g Gomega, b client.Object) []string {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(context.Background(), list, client.InNamespace(b.GetNamespace()))).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Name == b.GetName() && e.Type == corev1.EventTypeWarning {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

// metricValue returns the value of a gauge or counter series with the given labels, and whether it exists.
func metricValue(g Gomega, name string, labels map[string]string) (float64, bool) {
	families, err := metricsRegistry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
