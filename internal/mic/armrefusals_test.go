/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	"github.com/acrpull/acrpull/internal/mic"
)

// A scale set being deleted gets no PATCH, as upstream's MIC sends none: its pod's record stays Created while another
// scale set's pod with the same identity is assigned in the meantime. Once the scale set is no longer Deleting, its
// identity follows.
func TestDeletingScaleSetIsLeftAlone(t *testing.T) {
	ns := newNamespace(t)
	going := scaleSet(t, "pool-going", "going-0")
	staying := scaleSet(t, "pool-staying", "staying-0")
	if err := cloud.SetProvisioningState(going, "Deleting"); err != nil {
		t.Fatal(err)
	}
	rid := userIdentity(t, ns, "shared", "00000000-0000-0000-0000-0000000000f1", "deleting")
	labelledPod(t, ns, "on-going", "going-0", "deleting")
	labelledPod(t, ns, "on-staying", "staying-0", "deleting")
	eventually(t, "the other scale set's record Assigned", 20*time.Second, func() bool {
		r := record(mic.DefaultNamespace, "on-staying", ns, "shared")
		return r != nil && r.Status.Status == aadv1.AssignedIDAssigned
	})
	if !onHost(t, staying, rid) {
		t.Fatal("identity not on the scale set that is not being deleted")
	}
	// Two more cycles, each of which looks at the deleting scale set again.
	after := cycles(t)
	eventually(t, "two more cycles", 20*time.Second, func() bool { return cycles(t) >= after+2 })
	if onHost(t, going, rid) {
		t.Fatal("the controller patched a scale set that is being deleted")
	}
	if r := record(mic.DefaultNamespace, "on-going", ns, "shared"); r == nil || r.Status.Status != aadv1.AssignedIDCreated {
		t.Fatalf("record of the pod on the deleting scale set: %+v, want status Created", r)
	}
	if err := cloud.SetProvisioningState(going, "Succeeded"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "identity assigned once the scale set is no longer Deleting", 20*time.Second, func() bool { return onHost(t, going, rid) })
}

// ARM answers 400 FailedIdentityOperation when identities in a PATCH do not exist (deleted, or a typo in the
// AzureIdentity): the controller drops the identities the message names and assigns the rest, where a PATCH that
// failed as a whole would fail again on every cycle the missing identities' records are retried in.
func TestFailedIdentityOperationDropsTheMissingAndAssignsTheRest(t *testing.T) {
	ns := newNamespace(t)
	host := scaleSet(t, "pool-missing", "missing-0")
	good := userIdentity(t, ns, "present", "00000000-0000-0000-0000-0000000000f2", "present")
	for i := range 3 {
		name := fmt.Sprintf("missing-%d", i)
		// An AzureIdentity naming an identity Azure does not have.
		rid := fmt.Sprintf("/subscriptions/%s/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/%s", subscription, name)
		create(t, &aadv1.AzureIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: aadv1.AzureIdentitySpec{Type: aadv1.UserAssignedMSI, ClientID: fmt.Sprintf("00000000-0000-0000-0000-0000000000f%d", 5+i), ResourceID: rid}})
		create(t, &aadv1.AzureIdentityBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-binding"},
			Spec: aadv1.AzureIdentityBindingSpec{AzureIdentity: name, Selector: name}})
		pod := labelledPod(t, ns, "p-"+name, "missing-0", name)
		// Records of identities Azure does not have are retried on every cycle: gone with their pods, they leave later
		// tests' ARM request counts alone.
		t.Cleanup(func() {
			_ = k8s.Delete(context.Background(), pod, client.GracePeriodSeconds(0))
			eventually(t, "the missing identity's record removed", 20*time.Second, func() bool {
				return record(mic.DefaultNamespace, "p-"+name, ns, name) == nil
			})
		})
	}
	// The pods with missing identities come first, so that their records are retried in every batch the present one
	// joins.
	eventually(t, "records of the missing identities", 20*time.Second, func() bool {
		return record(mic.DefaultNamespace, "p-missing-2", ns, "missing-2") != nil
	})
	labelledPod(t, ns, "p-present", "missing-0", "present")
	eventually(t, "the present identity Assigned", 20*time.Second, func() bool {
		r := record(mic.DefaultNamespace, "p-present", ns, "present")
		return r != nil && r.Status.Status == aadv1.AssignedIDAssigned
	})
	if !onHost(t, host, good) {
		t.Fatal("the present identity is not on the scale set")
	}
	for i := range 3 {
		name := fmt.Sprintf("missing-%d", i)
		if r := record(mic.DefaultNamespace, "p-"+name, ns, name); r == nil || r.Status.Status != aadv1.AssignedIDCreated {
			t.Errorf("record for %s: %+v, want status Created", name, r)
		}
	}
}
