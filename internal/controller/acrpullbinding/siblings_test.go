/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/harness/registrytest"
)

// Bindings of one account that arrive together are attached in a few patches of the account, not one each: the
// first pass to mint creates its waiting siblings' secrets (each owned and labelled by its own binding) and attaches
// them with its own. Every binding still ends Ready with its own secret.
func TestBindingsOfOneAccountAreAttachedTogether(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "", "theirs")
	// A registry of its own: the controller holds back from a registry's token endpoints for a while after a 429,
	// and earlier tests throttle example.azurecr.io; bindings failing first would each retry on their own.
	server, reg := registryOfItsOwn(t, "together")
	// An identity of its own, so no earlier test has a token cached for it.
	clientID := freshIdentity(t, server)
	// IMDS is one endpoint for every identity: a binding of another fresh identity going Ready shows the controller
	// asks it again after earlier tests' 429s.
	serviceAccount(t, ns, "warm-up", "")
	probe := managedIdentityBinding(ns, "warm-up", "warm-up", "repository:alice:pull")
	probe.Spec.ACR.Server = server
	probe.Spec.Auth.ManagedIdentity.ClientID = freshIdentity(t, server)
	create(t, probe)
	deleteAtEnd(t, probe)
	eventuallyReady(t, probe, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)

	bindings := arriveTogether(t, ns, reg, azurefake.IMDSToken, 20, func(i int) *acrv1beta2.AcrPullBinding {
		b := managedIdentityBinding(ns, fmt.Sprintf("together-%02d", i), "default", "repository:alice:pull")
		b.Spec.ACR.Server = server
		b.Spec.Auth.ManagedIdentity.ClientID = clientID
		return b
	}, "theirs")
	last := getSecret(g, ns, "acr-pull-"+bindings[len(bindings)-1].Name)
	g.Expect(string(last.Data[corev1.DockerConfigJsonKey])).To(ContainSubstring(server))
	for _, b := range bindings {
		got := &acrv1beta2.AcrPullBinding{}
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(b), got)).To(Succeed())
		g.Expect(got.Status.TokenAudience).To(Equal("https://containerregistry.azure.net"), b.Name)
		sec := getSecret(g, ns, "acr-pull-"+b.Name)
		g.Expect(sec.Labels).To(HaveKeyWithValue(acrpullbinding.BindingLabel, b.Name))
		g.Expect(sec.OwnerReferences).To(HaveLen(1))
		g.Expect(sec.OwnerReferences[0].UID).To(Equal(got.UID))
	}
}

// arriveTogether creates n bindings (newBinding(i)) of the account "default" in ns at once and waits until each is
// Ready and attached next to the account's earlier names. Tokens from the endpoint that mints them are held back
// until the controller's cache holds all n, so that "at once" does not depend on how quickly a busy machine creates
// them. The account is then patched about once per pass that minted while others waited (the controller under test
// runs 4 workers, so 4), and more when a busy machine lets a token request time out and passes mint in waves (seen:
// 4-9 for 20 bindings with two cores kept busy besides); without sharing, once per binding. At most 3n/4 tells the
// two apart. A real client pulls from reg with the last binding's secret, which another pass may well have written.
func arriveTogether(t *testing.T, ns string, reg *registrytest.Registry, mintedBy azurefake.Endpoint, n int,
	newBinding func(i int) *acrv1beta2.AcrPullBinding, earlierNames ...string) []*acrv1beta2.AcrPullBinding {
	t.Helper()
	g := NewWithT(t)
	var patches atomic.Int64
	stop := countAccountUpdates(t, ns, "default", &patches)
	defer stop()
	hold := make(chan struct{})
	cloud.SetFault(mintedBy, azurefake.Fault{Hold: hold})
	release := sync.OnceFunc(func() { close(hold); cloud.ClearFaults() })
	t.Cleanup(release)
	var bindings []*acrv1beta2.AcrPullBinding
	for i := range n {
		b := newBinding(i)
		create(t, b)
		deleteAtEnd(t, b)
		bindings = append(bindings, b)
	}
	g.Eventually(func() int {
		seen := &acrv1beta2.AcrPullBindingList{}
		if err := controllerCache.List(context.Background(), seen, client.InNamespace(ns)); err != nil {
			return -1
		}
		return len(slices.DeleteFunc(seen.Items, func(b acrv1beta2.AcrPullBinding) bool {
			return !slices.ContainsFunc(bindings, func(ours *acrv1beta2.AcrPullBinding) bool { return ours.Name == b.Name })
		}))
	}, 30*time.Second, 10*time.Millisecond).Should(Equal(n), "bindings in the controller's cache")
	release()
	want := slices.Clone(earlierNames)
	for _, b := range bindings {
		eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
		want = append(want, "acr-pull-"+b.Name)
	}
	g.Expect(pullSecretNames(g, ns, "default")).To(ConsistOf(want))
	last := getSecret(g, ns, "acr-pull-"+bindings[n-1].Name)
	g.Expect(reg.Pull(context.Background(), "alice", tag, last.Data[corev1.DockerConfigJsonKey])).To(Succeed())
	t.Logf("%d patches of the service account for %d bindings", patches.Load(), n)
	g.Expect(patches.Load()).To(BeNumerically("<=", 3*n/4), "patches of the service account")
	return bindings
}

// A reference and a secret left behind for a binding that no longer exists are removed when the account is next
// seen; a secret of the same shape that is nobody's binding's stays referenced.
func TestNamesOfBindingsThatAreGoneAreUnreferenced(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	ghost := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acr-pull-ghost",
			Labels: map[string]string{acrpullbinding.BindingLabel: "ghost"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "acrpull.microsoft.com/v1beta2", Kind: "AcrPullBinding",
				Name: "ghost", UID: types.UID("0b1f9c7e-5d9a-4c53-9d4e-000000000001"), Controller: ptrTo(true)}}},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)},
	}
	create(t, ghost)
	mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acr-pull-mine"},
		Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: []byte(`{"auths":{}}`)}}
	create(t, mine)
	serviceAccount(t, ns, "default", "", "theirs", "acr-pull-ghost", "acr-pull-mine", "acr-pull-never-created")

	g.Eventually(func(g Gomega) {
		g.Expect(pullSecretNames(g, ns, "default")).To(Equal([]string{"theirs", "acr-pull-mine", "acr-pull-never-created"}))
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(ghost), &corev1.Secret{}))).To(BeTrue())
	}).WithTimeout(30 * time.Second).Should(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(mine), &corev1.Secret{})).To(Succeed())
}

// freshIdentity registers a managed identity no test has used, allowed to pull "alice" from server.
func freshIdentity(t *testing.T, server string) string {
	t.Helper()
	identities++
	clientID := fmt.Sprintf("88888888-8888-4888-8888-%06d%06d", time.Now().UnixNano()%1e6, identities)
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AssignedToVM: true})
	cloud.AddRoleAssignment(clientID, server, []string{"alice"}, []string{"pull"})
	return clientID
}

// identities counts the identities freshIdentity made.
var identities int

// A binding whose name is too long for its secret name (cut and hashed) is cleaned up after too: the secret name
// does not map back to the binding, so the owner reference says whose it is.
func TestLongNamedBindingGoneIsUnreferenced(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "", "theirs")
	b := managedIdentityBinding(ns, strings.Repeat("long-", 49)+"name", "default", "repository:alice:pull")
	create(t, b)
	eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	secrets := &corev1.SecretList{}
	g.Expect(k8s.List(ctx, secrets, client.InNamespace(ns))).To(Succeed())
	g.Expect(secrets.Items).To(HaveLen(1))
	name := secrets.Items[0].Name
	g.Expect(name).NotTo(ContainSubstring(b.Name), "a hashed name")

	// It vanishes without the controller seeing it go: paused first (the controller's cache drops it), then its
	// finalizer removed and the binding deleted.
	edit(t, b, func() { b.Labels = map[string]string{pausedLabel: "true"} })
	time.Sleep(time.Second)
	edit(t, b, func() { b.Finalizers = nil })
	g.Expect(k8s.Delete(ctx, b)).To(Succeed())
	g.Consistently(func(g Gomega) []string { return pullSecretNames(g, ns, "default") }).
		WithTimeout(2 * time.Second).Should(ContainElement(name))

	// The next change of the account finds the name no binding claims.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}}
	edit(t, sa, func() { sa.Annotations = map[string]string{"touched": "yes"} })
	g.Eventually(func(g Gomega) {
		g.Expect(pullSecretNames(g, ns, "default")).To(Equal([]string{"theirs"}))
		g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &corev1.Secret{}))).To(BeTrue())
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// countAccountUpdates counts the updates of one service account until stop is called.
func countAccountUpdates(t *testing.T, ns, name string, count *atomic.Int64) (stop func()) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().ServiceAccounts(ns).Watch(context.Background(), metav1.ListOptions{FieldSelector: "metadata.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			if e.Type == watch.Modified {
				count.Add(1)
			}
		}
	}()
	return func() { w.Stop(); <-done }
}

// A binding backing off after a failure recovers as soon as a sibling that needs the same credential mints it: the
// sibling's pass creates its secret and wakes it, instead of it waiting out minutes of backoff.
func TestBindingBackingOffRecoversWhenASiblingMints(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	server, reg := registryOfItsOwn(t, "backoff")
	// An identity with no role on the registry yet: the registry refuses it.
	clientID := fmt.Sprintf("77777777-7777-4777-8777-%012d", time.Now().UnixNano()%1e12)
	cloud.AddIdentity(azurefake.Identity{ClientID: clientID, TenantID: tenantID, AssignedToVM: true})
	binding := func(name string) *acrv1beta2.AcrPullBinding {
		b := managedIdentityBinding(ns, name, "default", "repository:alice:pull")
		b.Spec.ACR.Server = server
		b.Spec.Auth.ManagedIdentity.ClientID = clientID
		return b
	}
	waiting := binding("waiting")
	create(t, waiting)
	deleteAtEnd(t, waiting)
	eventuallyReady(t, waiting, metav1.ConditionFalse, acrv1beta2.ReasonRegistryDenied)

	// As if it had been failing for an hour: its next attempt is then minutes away (the backoff grows with how long
	// the binding has been failing, up to 5 minutes). Its attempts already queued run first; then it is quiet.
	g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got := &acrv1beta2.AcrPullBinding{}
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(waiting), got); err != nil {
			return err
		}
		for i := range got.Status.Conditions {
			got.Status.Conditions[i].LastTransitionTime = metav1.NewTime(time.Now().Add(-time.Hour))
		}
		return k8s.Status().Update(ctx, got)
	})).To(Succeed())
	g.Eventually(func() bool {
		before := cloud.HostRequests(server)
		time.Sleep(2500 * time.Millisecond) // longer than the shortest backoff (2 s)
		return cloud.HostRequests(server) == before
	}).WithTimeout(20*time.Second).Should(BeTrue(), "the failing binding should go quiet")
	t.Logf("%d registry requests while failing", cloud.HostRequests(server))

	cloud.AddRoleAssignment(clientID, server, []string{"alice"}, []string{"pull"})
	sibling := binding("sibling")
	start := time.Now()
	create(t, sibling)
	deleteAtEnd(t, sibling)
	eventuallyReady(t, sibling, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	g.Eventually(func(g Gomega) {
		c := readyCondition(g, waiting)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "message: %s", c.Message)
	}).WithTimeout(15 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	t.Logf("the waiting binding was Ready %s after its sibling was created", time.Since(start).Round(time.Millisecond))

	// Its secret holds the very credential the sibling minted (each token has its own ID), and it pulls.
	mine, theirs := getSecret(g, ns, "acr-pull-waiting"), getSecret(g, ns, "acr-pull-sibling")
	g.Expect(mine.Data[corev1.DockerConfigJsonKey]).To(Equal(theirs.Data[corev1.DockerConfigJsonKey]))
	g.Expect(mine.OwnerReferences).To(HaveLen(1))
	g.Expect(mine.OwnerReferences[0].Name).To(Equal("waiting"))
	g.Expect(reg.Pull(ctx, "alice", tag, mine.Data[corev1.DockerConfigJsonKey])).To(Succeed())
	g.Expect(pullSecretNames(g, ns, "default")).To(ConsistOf("acr-pull-waiting", "acr-pull-sibling"))
}

// Workload identity bindings whose IDs come from the federated account's annotations are attached together too: a
// sibling's IDs are resolved from the same account the minting pass read.
func TestFederatedBindingsOfOneAccountAreAttachedTogether(t *testing.T) {
	ns := newNamespace(t)
	serviceAccount(t, ns, "default", "")
	server, reg := registryOfItsOwn(t, "federated")
	clientID := freshIdentity(t, server)
	serviceAccount(t, ns, "federated", clientID)
	arriveTogether(t, ns, reg, azurefake.EntraToken, 16, func(i int) *acrv1beta2.AcrPullBinding {
		b := workloadIdentityBinding(ns, fmt.Sprintf("federated-%02d", i), "federated", "default", "repository:alice:pull")
		b.Spec.ACR.Server = server
		return b
	})
}

// registryOfItsOwn starts a real registry under a fresh host name holding alice:<tag>. ACR gates are per host, so a
// test on it is not held back by earlier tests' 429s on example.azurecr.io.
func registryOfItsOwn(t *testing.T, prefix string) (string, *registrytest.Registry) {
	t.Helper()
	server := fmt.Sprintf("%s-%d.azurecr.io", prefix, time.Now().UnixNano())
	reg := registrytest.Start(t, cloud, server)
	if err := reg.PushRandom(context.Background(), "alice", tag); err != nil {
		t.Fatal(err)
	}
	return server, reg
}
