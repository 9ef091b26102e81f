/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// The outage scenario counts a binding's status changes from the outage's start only, ignores updates that leave
// the status as it was, and times recovery from the end of the outage for the bindings that went not Ready.
func TestStatusWatchCountsChangesAfterTheMark(t *testing.T) {
	sw := &statusWatch{last: map[string]acrv1beta2.AcrPullBindingStatus{}, changes: map[string]int{},
		notReady: map[string]bool{}, readyAt: map[string]time.Time{}}
	withReady := func(name string, status metav1.ConditionStatus, message string) *acrv1beta2.AcrPullBinding {
		b := newBinding("ns", name, 0)
		b.Status.Conditions = []metav1.Condition{{Type: acrv1beta2.ConditionReady, Status: status, Reason: "R", Message: message}}
		return b
	}
	sw.observe(withReady("a", metav1.ConditionTrue, "ok"), watch.Added)
	sw.observe(withReady("b", metav1.ConditionTrue, "ok"), watch.Added)
	sw.observe(withReady("a", metav1.ConditionTrue, "refreshed"), watch.Modified) // before the outage: not counted
	sw.mark()
	sw.observe(withReady("a", metav1.ConditionFalse, "down"), watch.Modified)
	sw.observe(withReady("a", metav1.ConditionFalse, "down"), watch.Modified) // metadata only: not a status write
	sw.observe(withReady("a", metav1.ConditionFalse, "down, retry after 2s"), watch.Modified)
	if total, most, notReady := sw.writes(); total != 2 || most != 2 || notReady != 1 {
		t.Fatalf("during the outage: %d writes, max %d, %d not Ready; want 2, 2, 1", total, most, notReady)
	}
	up := time.Now()
	sw.observe(withReady("a", metav1.ConditionTrue, "ok"), watch.Modified)
	sw.observe(withReady("b", metav1.ConditionTrue, "ok again"), watch.Modified) // never went not Ready
	if got := sw.recoveredSince(up); len(got) != 1 {
		t.Fatalf("recovered %v, want the one binding that was not Ready", got)
	}
	if total, most, _ := sw.writes(); total != 4 || most != 3 {
		t.Fatalf("through recovery: %d writes, max %d; want 4, 3", total, most)
	}
}
