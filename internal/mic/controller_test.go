/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/mic"
)

// A labelled pod's identity is assigned to its node's scale set with one GET and one PATCH, recorded as upstream
// records it, and removed again with the last pod that uses it.
func TestSingleIdentityAssignedAndUnassigned(t *testing.T) {
	ns := newNamespace(t)
	host := scaleSet(t, "pool-single", "single-0", "single-1")
	rid := userIdentity(t, ns, "web-id", "00000000-0000-0000-0000-0000000000c1", "web-single")
	getsBefore, patchesBefore := cloud.ARMCount(http.MethodGet, azurefake.ARMKindVMSS), cloud.ARMCount(http.MethodPatch, azurefake.ARMKindVMSS)
	cyclesBefore := cycles(t)

	start := time.Now()
	pod := labelledPod(t, ns, "web", "single-0", "web-single")
	other := labelledPod(t, ns, "web-2", "single-1", "web-single")
	eventually(t, "both records Assigned", 20*time.Second, func() bool {
		a, b := record(mic.DefaultNamespace, pod.Name, ns, "web-id"), record(mic.DefaultNamespace, other.Name, ns, "web-id")
		return a != nil && b != nil && a.Status.Status == aadv1.AssignedIDAssigned && b.Status.Status == aadv1.AssignedIDAssigned
	})
	t.Logf("pod created to identity assigned: %s", time.Since(start).Round(time.Millisecond))
	if !onHost(t, host, rid) {
		t.Fatal("identity not on the scale set")
	}
	rec := record(mic.DefaultNamespace, pod.Name, ns, "web-id")
	if rec.Labels[aadv1.NodeNameLabel] != "single-0" || rec.Spec.AzureIdentityRef == nil || rec.Spec.AzureIdentityRef.Name != "web-id" ||
		rec.Spec.AzureBindingRef == nil || rec.Spec.AzureBindingRef.ResourceVersion == "" || len(rec.Finalizers) != 1 {
		t.Errorf("record %+v", rec)
	}
	// Other tests' scale sets may be visited by the same cycles, so the bound is per cycle across all of them: at most
	// one GET and one PATCH per scale set and cycle, and for this scale set the two pods' identity took at most two
	// PATCHes (one if both pods arrived within one cycle).
	patches := cloud.ARMCount(http.MethodPatch, azurefake.ARMKindVMSS) - patchesBefore
	gets := cloud.ARMCount(http.MethodGet, azurefake.ARMKindVMSS) - getsBefore
	ran := cycles(t) - cyclesBefore
	t.Logf("%d cycles, %d GET, %d PATCH", ran, gets, patches)
	if patches < 1 || patches > 2 || gets > ran {
		t.Errorf("ARM calls for two pods on one scale set: %d GET, %d PATCH in %d cycles", gets, patches, ran)
	}

	// One of two pods goes: the other still uses the identity on the scale set, so it stays.
	if err := k8s.Delete(context.Background(), other, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the record of the deleted pod gone", 20*time.Second, func() bool {
		return record(mic.DefaultNamespace, other.Name, ns, "web-id") == nil
	})
	if !onHost(t, host, rid) {
		t.Fatal("identity removed while another pod on the scale set uses it")
	}
	// The last pod goes: the identity leaves the scale set.
	if err := k8s.Delete(context.Background(), pod, client.GracePeriodSeconds(0)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "identity removed with the last pod", 20*time.Second, func() bool { return !onHost(t, host, rid) })
}

// An identity someone removes from the scale set by hand is put back by the periodic reconcile.
func TestIdentityRemovedByHandIsReadded(t *testing.T) {
	ns := newNamespace(t)
	host := scaleSet(t, "pool-manual", "manual-0")
	rid := userIdentity(t, ns, "kept", "00000000-0000-0000-0000-0000000000c2", "manual")
	labelledPod(t, ns, "p", "manual-0", "manual")
	eventually(t, "assigned", 20*time.Second, func() bool { return onHost(t, host, rid) })
	if err := cloud.UnassignIdentities(host, rid); err != nil {
		t.Fatal(err)
	}
	eventually(t, "re-added by the reconcile", 20*time.Second, func() bool { return onHost(t, host, rid) })
}

// A batch with an identity the controller may not assign (LinkedAuthorizationFailed) still assigns the others; the
// refused binding gets a Warning Event.
func TestBatchWithADeniedIdentityAssignsTheRest(t *testing.T) {
	ns := newNamespace(t)
	host := scaleSet(t, "pool-denied", "denied-0")
	good := userIdentity(t, ns, "good", "00000000-0000-0000-0000-0000000000c3", "good")
	bad := userIdentity(t, ns, "bad", "00000000-0000-0000-0000-0000000000c4", "bad")
	cloud.DenyAssign(bad)
	labelledPod(t, ns, "a", "denied-0", "good")
	labelledPod(t, ns, "b", "denied-0", "bad")
	eventually(t, "the allowed identity assigned", 20*time.Second, func() bool { return onHost(t, host, good) })
	if onHost(t, host, bad) {
		t.Fatal("the denied identity is on the scale set")
	}
	eventually(t, "a Warning on the denied binding", 20*time.Second, func() bool {
		var evs eventsv1.EventList
		_ = k8s.List(context.Background(), &evs, client.InNamespace(ns))
		for _, e := range evs.Items {
			if e.Regarding.Name == "bad-binding" && e.Type == corev1.EventTypeWarning && e.Reason == "BindingApplyError" {
				return true
			}
		}
		return false
	})
}

// Immutable identities and ones already on the scale set before the controller came are never removed.
func TestImmutableAndPreexistingIdentitiesStay(t *testing.T) {
	ns := newNamespace(t)
	host := scaleSet(t, "pool-immutable", "imm-0")
	immutable := userIdentity(t, ns, "immutable", immutableClientID, "immutable")
	theirs := userIdentity(t, ns, "theirs", "00000000-0000-0000-0000-0000000000c5", "theirs")
	if err := cloud.AssignIdentities(host, theirs); err != nil {
		t.Fatal(err)
	}
	a := labelledPod(t, ns, "a", "imm-0", "immutable")
	b := labelledPod(t, ns, "b", "imm-0", "theirs")
	eventually(t, "both recorded Assigned", 20*time.Second, func() bool {
		ra, rb := record(mic.DefaultNamespace, a.Name, ns, "immutable"), record(mic.DefaultNamespace, b.Name, ns, "theirs")
		return ra != nil && rb != nil && ra.Status.Status == aadv1.AssignedIDAssigned && rb.Status.Status == aadv1.AssignedIDAssigned
	})
	for _, p := range []*corev1.Pod{a, b} {
		if err := k8s.Delete(context.Background(), p, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "records gone", 20*time.Second, func() bool {
		return record(mic.DefaultNamespace, a.Name, ns, "immutable") == nil && record(mic.DefaultNamespace, b.Name, ns, "theirs") == nil
	})
	time.Sleep(4 * time.Second) // a full reconcile later, too
	if !onHost(t, host, immutable) || !onHost(t, host, theirs) {
		t.Fatalf("immutable on host %v, preexisting on host %v: both must stay", onHost(t, host, immutable), onHost(t, host, theirs))
	}
}

// Several identities for pods on one node, including bindings and identities of the same names in two namespaces:
// every pod gets its own record and every identity reaches the scale set.
func TestMultipleIdentitiesAndNameConflictsAcrossNamespaces(t *testing.T) {
	ns1, ns2 := newNamespace(t), newNamespace(t)
	host := scaleSet(t, "pool-multi", "multi-0")
	a := userIdentity(t, ns1, "same", "00000000-0000-0000-0000-0000000000c6", "multi-a")
	b := userIdentity(t, ns2, "same", "00000000-0000-0000-0000-0000000000c7", "multi-b")
	c := userIdentity(t, ns1, "third", "00000000-0000-0000-0000-0000000000c8", "multi-c")
	labelledPod(t, ns1, "p", "multi-0", "multi-a")
	labelledPod(t, ns2, "p", "multi-0", "multi-b")
	labelledPod(t, ns1, "q", "multi-0", "multi-c")
	eventually(t, "three identities on the scale set", 20*time.Second, func() bool {
		return onHost(t, host, a) && onHost(t, host, b) && onHost(t, host, c)
	})
	for _, r := range []struct{ pod, ns, id string }{{"p", ns1, "same"}, {"p", ns2, "same"}, {"q", ns1, "third"}} {
		rec := record(mic.DefaultNamespace, r.pod, r.ns, r.id)
		if rec == nil || rec.Spec.AzureIdentityRef.Namespace != r.ns {
			t.Errorf("record for %s/%s and %s: %+v", r.ns, r.pod, r.id, rec)
		}
	}
}

// ARM throttles the controller's writes (429 with Retry-After): it waits as told instead of calling again on every
// event, and every scale set still gets its identity.
func TestRetryAfterFromARMIsHonoured(t *testing.T) {
	ns := newNamespace(t)
	cloud.SetARMRateLimit(0, 0.5) // one write every 2 s
	t.Cleanup(func() { cloud.SetARMRateLimit(0, 0) })
	var hosts, ids []string
	patchesBefore := cloud.ARMCount(http.MethodPatch, azurefake.ARMKindVMSS)
	for i := range 3 {
		name := "throttled-" + string(rune('a'+i))
		hosts = append(hosts, scaleSet(t, "pool-"+name, name+"-0"))
		ids = append(ids, userIdentity(t, ns, name, "00000000-0000-0000-0000-0000000000e"+string(rune('a'+i)), name))
	}
	start := time.Now()
	for i := range 3 {
		name := "throttled-" + string(rune('a'+i))
		labelledPod(t, ns, "p-"+name, name+"-0", name)
	}
	eventually(t, "all three scale sets assigned", 30*time.Second, func() bool {
		for i := range hosts {
			if !onHost(t, hosts[i], ids[i]) {
				return false
			}
		}
		return true
	})
	elapsed := time.Since(start)
	patches := cloud.ARMCount(http.MethodPatch, azurefake.ARMKindVMSS) - patchesBefore
	throttled := patches - 3
	t.Logf("3 scale sets at 0.5 writes/s: %d PATCH requests in %s, %d answered 429", patches, elapsed.Round(100*time.Millisecond), throttled)
	// Honouring Retry-After (2 s here) allows, per wait, about one refused write, plus one per scale set in the first
	// wave (all three start together before any 429 was seen). Every event (records, pods) queues a cycle, so a
	// controller that did not wait would be refused many times more.
	if limit := int64(elapsed/(2*time.Second)) + int64(len(hosts)) + 2; throttled > limit {
		t.Errorf("%d PATCHes refused with 429 in %s (at most %d if Retry-After is honoured)", throttled, elapsed, limit)
	}
}
