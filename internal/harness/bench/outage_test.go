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
		failing: map[string]bool{}, notReady: map[string]bool{}, recoveredAt: map[string]time.Time{}, readyAt: map[string]time.Time{}}
	with := func(name string, status metav1.ConditionStatus, reason, message string) *acrv1beta2.AcrPullBinding {
		b := newBinding("ns", name, 0)
		b.Status.Conditions = []metav1.Condition{{Type: acrv1beta2.ConditionReady, Status: status, Reason: reason, Message: message}}
		return b
	}
	const ok, down = acrv1beta2.ReasonTokenMinted, acrv1beta2.ReasonAzureUnavailable
	T, F := metav1.ConditionTrue, metav1.ConditionFalse
	sw.observe(with("a", T, ok, "ok"), watch.Added)
	sw.observe(with("b", T, ok, "ok"), watch.Added)
	sw.observe(with("c", T, ok, "ok"), watch.Added)
	sw.observe(with("a", T, ok, "refreshed"), watch.Modified) // before the outage: not counted
	sw.mark()
	sw.observe(with("a", F, down, "down"), watch.Modified)
	sw.observe(with("a", F, down, "down"), watch.Modified) // metadata only: not a status write
	sw.observe(with("a", F, down, "down, retry after 2s"), watch.Modified)
	sw.observe(with("c", T, down, "serving; refresh failed"), watch.Modified) // failing, still Ready
	if total, most, failing, notReady := sw.writes(); total != 3 || most != 2 || failing != 2 || notReady != 1 {
		t.Fatalf("during the outage: %d writes, max %d, %d failing, %d not Ready; want 3, 2, 2, 1", total, most, failing, notReady)
	}
	if n := sw.failingNow(); n != 2 {
		t.Fatalf("%d failing now, want 2", n)
	}
	up := time.Now()
	sw.observe(with("a", T, ok, "ok"), watch.Modified)
	sw.observe(with("b", T, ok, "ok again"), watch.Modified) // never failed
	sw.observe(with("c", T, ok, "refreshed"), watch.Modified)
	if got := sw.sinceFor(up, sw.recoveredAt); len(got) != 2 {
		t.Fatalf("recovered %v, want the two bindings that failed", got)
	}
	if got := sw.sinceFor(up, sw.readyAt); len(got) != 1 {
		t.Fatalf("Ready again %v, want the one binding that was not Ready", got)
	}
	if total, most, _, _ := sw.writes(); total != 6 || most != 3 || sw.failingNow() != 0 {
		t.Fatalf("through recovery: %d writes, max %d, %d failing; want 6, 3, 0", total, most, sw.failingNow())
	}
}
