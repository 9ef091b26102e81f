/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// A whole-cloud outage over many bindings sharing few identities, shorter than their tokens' lives: each binding
// stays Ready on the token it holds, its status is written once entering the failure and once leaving it, one
// Warning each, Azure sees requests per shared credential rather than per binding, no secret is touched, and when
// the cloud comes back the first success on a credential wakes every binding waiting on it (on their own they would
// wait a quarter of their token's remaining life: seconds here, an hour for a 3-hour token; see wake.go).
func TestAnOutageWritesEachStatusTwiceAndOneSuccessWakesEveryBinding(t *testing.T) {
	g := NewWithT(t)
	// Tokens living 60 s: every binding's refresh falls due 24-30 s after its mint, inside the outage, and its token
	// outlives the outage (about 15 s more), as an hours-long token outlives most outages.
	cloud.SetLifetimes(azurefake.Lifetimes{Entra: time.Hour, ACRRefresh: 3 * time.Hour, ACRAccess: 60 * time.Second})
	defer cloud.SetLifetimes(azurefake.Lifetimes{})
	second := freshIdentity(t, registryHost)

	// 30 bindings, two namespaces, two identities, one scope: two shared credentials.
	const credentials, perNamespace = 2, 15
	var bindings []*acrv1beta2.AcrPullBinding
	namespaces := map[string]bool{}
	for range 2 {
		ns := newNamespace(t)
		namespaces[ns] = true
		serviceAccount(t, ns, "default", "")
		for i := range perNamespace {
			// A scope of its own: no token cached by an earlier test (which lives 75 minutes) serves it.
			b := managedIdentityBinding(ns, fmt.Sprintf("outage-%d", i), "default", "repository:alice:pull repository:outage-storm:pull")
			if i%2 == 1 {
				b.Spec.Auth.ManagedIdentity.ClientID = second
			}
			create(t, b)
			deleteAtEnd(t, b)
			bindings = append(bindings, b)
		}
	}
	for _, b := range bindings {
		eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted)
	}
	secretsBefore := map[string]*corev1.Secret{}
	for _, b := range bindings {
		secretsBefore[b.Namespace+"/"+b.Name] = getSecret(g, b.Namespace, "acr-pull-"+b.Name)
	}
	writes := countStatusWrites(t, namespaces)
	defer writes.stop()

	cloud.Outage(azurefake.Fault{Status: 503})
	defer cloud.ClearFaults()
	for _, b := range bindings {
		eventuallyReady(t, b, metav1.ConditionTrue, acrv1beta2.ReasonAzureUnavailable)
	}
	// Every binding is failing to refresh now, and still Ready. Down through several of the shared credentials'
	// retries, counting what the retries cost.
	cloud.ResetCounts()
	time.Sleep(12 * time.Second)

	duringOutage := writes.snapshot()
	var azure int64
	for _, n := range cloud.Counts() {
		azure += n
	}
	t.Logf("during the outage: %d Azure requests, status writes per binding %v", azure, duringOutage)
	for _, b := range bindings {
		key := b.Namespace + "/" + b.Name
		g.Expect(duringOutage[key]).To(Equal(1), "%s: one status write entering the failure, none per retry", key)
		g.Expect(warnings(g, b)).To(Equal(1), "%s: one Warning for the outage", key)
		after := getSecret(g, b.Namespace, "acr-pull-"+b.Name)
		g.Expect(after.ResourceVersion).To(Equal(secretsBefore[key].ResourceVersion), "%s: the secret is untouched", key)
		g.Expect(after.Data).To(Equal(secretsBefore[key].Data))
		c := readyCondition(g, b)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "%s: Ready on the token it holds through the outage: %s", key, c.Message)
	}
	// The token cache probes each credential at most every 8 s after doubling from 1 s: in 12 s about three requests
	// per credential, however many bindings share it, where each binding retrying on its own would cost several per
	// binding. (The bound leaves room for other tests' bindings, whose tokens fail to refresh in the outage too.)
	g.Expect(azure).To(BeNumerically("<", len(bindings)), "Azure requests bounded by the %d credentials, not by the %d bindings",
		credentials, len(bindings))

	cloud.ClearFaults()
	for _, b := range bindings {
		NewWithT(t).Eventually(func(g Gomega) {
			c := readyCondition(g, b)
			g.Expect(c.Reason).To(Equal(acrv1beta2.ReasonTokenMinted), "%s/%s: %s", b.Namespace, b.Name, c.Message)
		}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
	}
	for _, b := range bindings {
		key := b.Namespace + "/" + b.Name
		// The watch may deliver the last write a moment after the read that saw it.
		g.Eventually(func() int { return writes.snapshot()[key] }).Should(Equal(2), "%s: entering the failure and leaving it", key)
		g.Expect(allEvents(g, b)).To(Equal(1), "%s: one Event for the whole outage, none for the recovery", key)
	}
	g.Expect(controllerLog.String()).To(ContainSubstring("Credential works again; waking the bindings waiting on it"))
}

// statusWrites counts, per binding of the namespaces, the updates that changed its status other than the Verified
// condition (the pull check after a new credential, which is not the outage's doing).
type statusWrites struct {
	mu     sync.Mutex
	counts map[string]int
	stop   func()
}

func countStatusWrites(t *testing.T, namespaces map[string]bool) *statusWrites {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	w, err := wc.Watch(context.Background(), &acrv1beta2.AcrPullBindingList{})
	if err != nil {
		t.Fatal(err)
	}
	sw := &statusWrites{counts: map[string]int{}}
	last := map[string]acrv1beta2.AcrPullBindingStatus{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.ResultChan() {
			b, ok := e.Object.(*acrv1beta2.AcrPullBinding)
			if !ok || !namespaces[b.Namespace] {
				continue
			}
			key := b.Namespace + "/" + b.Name
			st := withoutVerified(b.Status)
			prev, seen := last[key]
			last[key] = st
			if e.Type == watch.Modified && seen && !equality.Semantic.DeepEqual(prev, st) {
				sw.mu.Lock()
				sw.counts[key]++
				sw.mu.Unlock()
			}
		}
	}()
	sw.stop = func() { w.Stop(); <-done }
	return sw
}

func (sw *statusWrites) snapshot() map[string]int {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	out := make(map[string]int, len(sw.counts))
	for k, v := range sw.counts {
		out[k] = v
	}
	return out
}

func withoutVerified(st acrv1beta2.AcrPullBindingStatus) acrv1beta2.AcrPullBindingStatus {
	cp := *st.DeepCopy()
	cp.Conditions = nil
	for _, c := range st.Conditions {
		if c.Type != acrv1beta2.ConditionVerified {
			cp.Conditions = append(cp.Conditions, c)
		}
	}
	return cp
}

// warnings counts the Warning events about a binding, each repetition of a series included.
func warnings(g Gomega, b client.Object) int {
	return countEvents(g, b, corev1.EventTypeWarning)
}

// allEvents counts every event about a binding other than the pull check's, each repetition of a series included.
func allEvents(g Gomega, b client.Object) int {
	return countEvents(g, b, "")
}

func countEvents(g Gomega, b client.Object, eventType string) int {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(context.Background(), list, client.InNamespace(b.GetNamespace()))).To(Succeed())
	n := 0
	for _, e := range list.Items {
		if e.Regarding.Name == b.GetName() && (eventType == "" || e.Type == eventType) && !isPullCheckEvent(e.Reason) {
			n++
			if e.Series != nil && e.Series.Count > 1 {
				n += int(e.Series.Count) - 1
			}
		}
	}
	return n
}

// isPullCheckEvent says whether an event reason is the Verified condition's (verify.go), not the Ready condition's.
func isPullCheckEvent(reason string) bool {
	switch reason {
	case acrv1beta2.ReasonRepositoryNotFound, acrv1beta2.ReasonScopeDenied, acrv1beta2.ReasonRegistryUnreachable:
		return true
	}
	return false
}
