/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/azauth/armidentity"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/mic"
)

const (
	tenantID     = "72f988bf-0000-0000-0000-0000000000b1"
	micClientID  = "00000000-0000-0000-0000-00000000a1c0"
	micSecret    = "mic-secret"
	subscription = "00000000-0000-0000-0000-0000000000aa"
	nodeGroup    = "MC_rg_cluster_eastus"
)

var (
	env    *testenv.Env
	cloud  *azurefake.Cloud
	k8s    client.Client
	output testenv.Output
	// registry holds the controller's metrics.
	registry = prometheus.NewRegistry()
	// immutableClientID is an identity the controller must never remove (--immutable-user-msis).
	immutableClientID = "00000000-0000-0000-0000-0000000000c9"
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	logf.SetLogger(zap.New(zap.WriteTo(io.MultiWriter(os.Stderr, &output)), zap.Level(zapcore.InfoLevel)))
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
	cloud.AddIdentity(azurefake.Identity{ClientID: micClientID, TenantID: tenantID})
	cloud.AddClientSecret(micClientID, micSecret)

	azure := azauth.NewClient(azauth.Options{HTTPClient: cloud.HTTPClient(), CallTimeout: 10 * time.Second})
	arm, err := armidentity.New(azure, azauth.PublicCloud, "", armidentity.Credential{TenantID: tenantID, ClientID: micClientID, ClientSecret: micSecret}, time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "arm client:", err)
		return 1
	}
	mgr, err := mic.NewManager(env.Config, mic.Options{
		MetricsAddr: "0", ProbeAddr: "0", ARM: arm, MetricsRegistry: registry,
		Config: mic.Config{
			ReconcileInterval: 3 * time.Second,
			UpdateRetries:     2,
			Policy:            mic.Policy{ImmutableClientIDs: []string{immutableClientID}},
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "manager:", err)
		return 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	code := m.Run()
	cancel()
	if err := <-done; err != nil {
		fmt.Fprintln(os.Stderr, "manager stopped:", err)
		code = 1
	}
	return code
}

func newNamespace(t *testing.T) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "mic-"}}
	create(t, ns)
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}})
	return ns.Name
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// scaleSet adds a scale set to the fake cloud and nodes of it to the cluster, with the providerIDs the Azure cloud
// provider writes.
func scaleSet(t *testing.T, name string, nodes ...string) string {
	t.Helper()
	id := cloud.AddVMSS(subscription, nodeGroup, name)
	for i, n := range nodes {
		create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}, Spec: corev1.NodeSpec{
			ProviderID: fmt.Sprintf("azure://%s/virtualMachines/%d", id, i)}})
	}
	return id
}

// userIdentity adds a user-assigned identity to the fake cloud and an AzureIdentity and binding for it.
func userIdentity(t *testing.T, ns, name, clientID, selector string) string {
	t.Helper()
	rid := fmt.Sprintf("/subscriptions/%s/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/%s", subscription, name)
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, ResourceID: rid, TenantID: tenantID})
	create(t, &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: clientID, ResourceID: rid}})
	create(t, &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-binding"},
		Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: name, Selector: selector}})
	return rid
}

func labelledPod(t *testing.T, ns, name, node, selector string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{aadv1.PodLabel: selector}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
	create(t, pod)
	return pod
}

func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func record(ns, pod, podNS, identity string) *aadv1.AzureAssignedIdentity {
	r := &aadv1.AzureAssignedIdentity{}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: mic.AssignedName(pod, podNS, identity)}, r); err != nil {
		return nil
	}
	return r
}

func onHost(t *testing.T, host, identity string) bool {
	t.Helper()
	ids, err := cloud.AssignedIdentities(host)
	if err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(ids, func(id string) bool { return strings.EqualFold(id, identity) })
}

// cycles is how many assignment cycles the controller has run.
func cycles(t *testing.T) int64 {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "aadpodidentity_mic_cycle_count" {
			return int64(f.GetMetric()[0].GetCounter().GetValue())
		}
	}
	t.Fatal("no aadpodidentity_mic_cycle_count metric")
	return 0
}
