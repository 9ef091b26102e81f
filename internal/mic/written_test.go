/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

func record(name, resourceVersion, status string) aadv1.AzureAssignedIdentity {
	return aadv1.AzureAssignedIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: resourceVersion},
		Status: aadv1.AzureAssignedIdentityStatus{Status: status}}
}

func statuses(recs []aadv1.AzureAssignedIdentity) map[string]string {
	out := map[string]string{}
	for _, r := range recs {
		out[r.Name] = r.ResourceVersion + " " + r.Status.Status
	}
	return out
}

func sameStatuses(t *testing.T, got []aadv1.AzureAssignedIdentity, want map[string]string) {
	t.Helper()
	g := statuses(got)
	if len(g) != len(want) || len(got) != len(want) {
		t.Fatalf("records %v, want %v", g, want)
	}
	for k, v := range want {
		if g[k] != v {
			t.Fatalf("records %v, want %v", g, want)
		}
	}
}

// A cycle sees the controller's own writes before the cache does, and the cache again once it has caught up or the
// write is too old to trust over it.
func TestOwnWritesStandInForALaggingCache(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	var w writtenRecords
	assigned, created := record("a", "12", aadv1.AssignedIDAssigned), record("b", "13", aadv1.AssignedIDCreated)
	w.wrote(&assigned, now)
	w.wrote(&created, now)
	w.deleted(types.NamespacedName{Namespace: "default", Name: "c"}, now)

	// The cache still has a as Created, not b at all, and c.
	cache := []aadv1.AzureAssignedIdentity{record("a", "10", aadv1.AssignedIDCreated), record("c", "11", aadv1.AssignedIDAssigned), record("d", "9", aadv1.AssignedIDAssigned)}
	sameStatuses(t, w.overlay(cache, now.Add(time.Second)), map[string]string{"a": "12 Assigned", "b": "13 Created", "d": "9 Assigned"})

	// The cache catches up: a and b as written, c gone. Every write is then forgotten, so what happens to the
	// records later (a changed by someone else) shows as the cache has it.
	cache = []aadv1.AzureAssignedIdentity{record("a", "12", aadv1.AssignedIDAssigned), record("b", "13", aadv1.AssignedIDCreated), record("d", "9", aadv1.AssignedIDAssigned)}
	sameStatuses(t, w.overlay(cache, now.Add(2*time.Second)), map[string]string{"a": "12 Assigned", "b": "13 Created", "d": "9 Assigned"})
	if len(w.records) != 0 {
		t.Fatalf("writes kept after the cache showed them: %v", w.records)
	}
	cache[0] = record("a", "20", aadv1.AssignedIDUnAssigned)
	cache = append(cache, record("c", "21", aadv1.AssignedIDCreated))
	sameStatuses(t, w.overlay(cache, now.Add(3*time.Second)), map[string]string{"a": "20 Unassigned", "b": "13 Created", "c": "21 Created", "d": "9 Assigned"})

	// A write the cache never shows (the record changed again elsewhere) stops counting after writtenTTL.
	stale := record("d", "30", aadv1.AssignedIDCreated)
	w.wrote(&stale, now)
	sameStatuses(t, w.overlay(cache, now.Add(writtenTTL)), map[string]string{"a": "20 Unassigned", "b": "13 Created", "c": "21 Created", "d": "30 Created"})
	sameStatuses(t, w.overlay(cache, now.Add(writtenTTL+time.Second)), map[string]string{"a": "20 Unassigned", "b": "13 Created", "c": "21 Created", "d": "9 Assigned"})
}
