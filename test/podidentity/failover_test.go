/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package podidentity_test runs two assignment controllers with leader election against one control plane and fake
// Azure, apart from internal/mic's suite, whose single controller would otherwise act alongside them.
package podidentity_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/azauth/armidentity"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/mic"
)

const (
	tenantID     = "72f988bf-0000-0000-0000-0000000000b2"
	micClientID  = "00000000-0000-0000-0000-00000000a1c1"
	micSecret    = "mic-secret"
	subscription = "00000000-0000-0000-0000-0000000000ab"
)

var (
	env   *testenv.Env
	cloud *azurefake.Cloud
	k8s   client.Client
	// runs numbers the test's runs, so that -count=N makes fresh objects on the shared apiserver and cloud.
	runs atomic.Int64
)

func TestMain(m *testing.M) {
	var (
		stop func()
		err  error
	)
	if env, cloud, stop, err = testenv.StartWithCloud(azurefake.Options{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	k8s = env.Client
	cloud.AddIdentity(azurefake.Identity{ClientID: micClientID, TenantID: tenantID})
	cloud.AddClientSecret(micClientID, micSecret)
	code := m.Run()
	stop()
	os.Exit(code)
}

type candidate struct {
	mgr     manager.Manager
	cancel  context.CancelFunc
	stopped chan error
}

// startCandidate runs an assignment controller that takes part in leader election with short leases.
func startCandidate(t *testing.T) *candidate {
	t.Helper()
	azure := azauth.NewClient(azauth.Options{HTTPClient: cloud.HTTPClient(), CallTimeout: 10 * time.Second})
	arm, err := armidentity.New(azure, azauth.PublicCloud, "", armidentity.Credential{TenantID: tenantID, ClientID: micClientID, ClientSecret: micSecret}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := mic.NewManager(env.Config, mic.Options{
		MetricsAddr: "0", ProbeAddr: "0", ARM: arm, MetricsRegistry: prometheus.NewRegistry(),
		LeaderElection: true, LeaderElectionNamespace: "default",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		Config: mic.Config{ReconcileInterval: 5 * time.Second, UpdateRetries: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{mgr: mgr, cancel: cancel, stopped: make(chan error, 1)}
	go func() { c.stopped <- mgr.Start(ctx) }()
	t.Cleanup(func() { c.stop(t) })
	return c
}

func (c *candidate) stop(t *testing.T) {
	if c.cancel == nil {
		return
	}
	c.cancel()
	c.cancel = nil
	if err := <-c.stopped; err != nil {
		t.Errorf("controller stopped: %v", err)
	}
}

func elected(c *candidate) bool {
	select {
	case <-c.mgr.Elected():
		return true
	default:
		return false
	}
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

// records are the assignment records of pods in podNamespace.
func records(t *testing.T, podNamespace string) []aadv1.AzureAssignedIdentity {
	t.Helper()
	var all aadv1.AzureAssignedIdentityList
	if err := k8s.List(context.Background(), &all); err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(all.Items, func(r aadv1.AzureAssignedIdentity) bool { return r.Spec.PodNamespace != podNamespace })
}

func create(t *testing.T, obj client.Object) {
	t.Helper()
	if err := k8s.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// The leader is stopped while its scale-set update is still running; the other controller takes the lease, finishes
// the cycle's work, assigns pods created while nobody led, and marks nothing as someone else's.
func TestLeaderChangeMidCycleLosesNothing(t *testing.T) {
	run := runs.Add(1)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("failover-%d", run)}}
	create(t, ns)
	create(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "default"}})
	host := cloud.AddVMSS(subscription, "MC_failover", fmt.Sprintf("pool-%d", run))
	node := func(i int) string { return fmt.Sprintf("%s-node-%d", ns.Name, i) }
	// Outside namespaced mode a binding matches pods of every namespace: selectors differ between runs too.
	selector := func(i int) string { return fmt.Sprintf("%s-id-%d", ns.Name, i) }
	for i := range 2 {
		create(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node(i)},
			Spec: corev1.NodeSpec{ProviderID: fmt.Sprintf("azure://%s/virtualMachines/%d", host, i)}})
	}
	var ids []string
	for i := range 3 {
		name := fmt.Sprintf("id-%d", i)
		rid := fmt.Sprintf("/subscriptions/%s/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/%s-%s", subscription, ns.Name, name)
		clientID := fmt.Sprintf("00000000-0000-0000-0000-%06d%06d", run, i)
		cloud.AddIdentity(azurefake.Identity{ClientID: clientID, ResourceID: rid, TenantID: tenantID})
		create(t, &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name},
			Spec: aadv1.AzureIdentitySpec{ClientID: clientID, ResourceID: rid}})
		create(t, &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name},
			Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: name, Selector: selector(i)}})
		ids = append(ids, strings.ToLower(rid))
	}
	pod := func(name, node, selector string) {
		create(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: name, Labels: map[string]string{aadv1.PodLabel: selector}},
			Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "c"}}}})
	}

	first := startCandidate(t)
	eventually(t, "a leader", 15*time.Second, func() bool { return elected(first) })
	second := startCandidate(t)
	cloud.SetARMOperationDelay(3 * time.Second)
	t.Cleanup(func() { cloud.SetARMOperationDelay(0) })

	patches := cloud.ARMCount(http.MethodPatch, azurefake.ARMKindVMSS)
	pod("a", node(0), selector(0))
	pod("b", node(1), selector(1))
	eventually(t, "the leader's PATCH", 10*time.Second, func() bool { return cloud.ARMCount(http.MethodPatch, azurefake.ARMKindVMSS) > patches })
	first.stop(t) // mid-cycle: its update is in progress, its records still Created
	pod("c", node(0), selector(2))

	eventually(t, "the other controller leading", 15*time.Second, func() bool { return elected(second) })
	eventually(t, "every record Assigned and every identity on the scale set", 30*time.Second, func() bool {
		recs := records(t, ns.Name)
		if len(recs) != 3 {
			return false
		}
		for _, r := range recs {
			if r.Status.Status != aadv1.AssignedIDAssigned {
				return false
			}
		}
		on, err := cloud.AssignedIdentities(host)
		if err != nil {
			return false
		}
		for _, id := range ids {
			if !slices.ContainsFunc(on, func(x string) bool { return strings.EqualFold(x, id) }) {
				return false
			}
		}
		return true
	})
	for _, r := range records(t, ns.Name) {
		if r.Annotations[mic.PreexistingAnnotation] == "true" {
			t.Errorf("record %s marked as someone else's identity after the failover", r.Name)
		}
	}
}
