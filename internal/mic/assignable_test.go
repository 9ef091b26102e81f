/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// With a migration cutoff, pods created from then on are left to federation; older pods keep their assignment.
func TestAssignPodsCreatedBefore(t *testing.T) {
	cutoff := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	old := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "old", CreationTimestamp: metav1.NewTime(cutoff.Add(-time.Hour))}}
	young := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "young", CreationTimestamp: metav1.NewTime(cutoff.Add(time.Hour))}}
	r := &Reconciler{}
	if got := r.assignable([]corev1.Pod{old, young}); len(got) != 2 {
		t.Errorf("no cutoff: %d pods, want 2", len(got))
	}
	r.Config.AssignPodsCreatedBefore = cutoff
	if got := r.assignable([]corev1.Pod{old, young}); len(got) != 1 || got[0].Name != "old" {
		t.Errorf("cutoff: %v, want only the old pod", got)
	}
}
