/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
)

// The repository a scope is checked on: the first that asks for pull; none for a scope that pulls nothing.
func TestPullRepository(t *testing.T) {
	for _, tc := range []struct {
		scope      string
		repository string
		entries    int
	}{
		{"repository:app:pull", "app", 1},
		{"repository:team/app:pull,push", "team/app", 1},
		{"  repository:a:push repository:b:pull repository:c:pull ", "b", 3},
		{"repository:a:push", "", 1},
		{"registry:catalog:*", "", 0},
		{"", "", 0},
	} {
		repository, entries := pullRepository(tc.scope)
		if repository != tc.repository || entries != tc.entries {
			t.Errorf("pullRepository(%q) = %q, %d; want %q, %d", tc.scope, repository, entries, tc.repository, tc.entries)
		}
	}
}

// Each answer of the registry becomes the condition's status and reason, and the message names the repository and
// what to do.
func TestVerdictOf(t *testing.T) {
	for _, tc := range []struct {
		outcome azauth.PullOutcome
		status  metav1.ConditionStatus
		hint    string
	}{
		{azauth.PullVerified, metav1.ConditionTrue, "listed"},
		{azauth.RepositoryNotFound, metav1.ConditionFalse, "push an image"},
		{azauth.ScopeDenied, metav1.ConditionFalse, "AcrPull"},
		{azauth.RegistryUnreachable, metav1.ConditionFalse, "next refresh"},
	} {
		v := verdictOf(azauth.JudgePull(map[azauth.PullOutcome]int{azauth.PullVerified: 200, azauth.RepositoryNotFound: 404,
			azauth.ScopeDenied: 401, azauth.RegistryUnreachable: 503}[tc.outcome], "NAME_UNKNOWN"), "r.azurecr.io", "team/app", 1)
		if v.status != tc.status || v.reason != string(tc.outcome) || !strings.Contains(v.message, `"team/app"`) ||
			!strings.Contains(v.message, tc.hint) {
			t.Errorf("%s: %+v", tc.outcome, v)
		}
	}
}

// countingChecker answers every check with PullVerified and counts them.
type countingChecker struct{ calls atomic.Int64 }

func (c *countingChecker) CheckPull(context.Context, string, string, azauth.Token) azauth.PullCheck {
	c.calls.Add(1)
	return azauth.PullCheck{Outcome: azauth.PullVerified, Detail: "listed"}
}

// A credential is checked once, however often it is started; a registry-wide one or one that pulls nothing is
// judged without a request; checks of expired credentials are forgotten; an unknown credential has no result.
func TestPullVerifierChecksEachCredentialOnce(t *testing.T) {
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(unitNow)
	checker := &countingChecker{}
	v := newPullVerifier(checker, discardMetrics{}, clk)
	expires := unitNow.Add(time.Hour)
	for range 5 {
		v.start(ctx, "a", expires, "r.azurecr.io", "repository:app:pull", azauth.Token{})
	}
	if got, ok := v.result(ctx, "a", noWake); !ok || got.reason != acrv1beta2.ReasonPullVerified || checker.calls.Load() != 1 {
		t.Errorf("five starts of one credential: %+v %v after %d checks", got, ok, checker.calls.Load())
	}
	v.start(ctx, "wide", expires, "r.azurecr.io", "", azauth.Token{})
	v.start(ctx, "push", expires, "r.azurecr.io", "repository:app:push", azauth.Token{})
	if got, _ := v.result(ctx, "wide", noWake); got.status != metav1.ConditionUnknown || got.reason != acrv1beta2.ReasonRegistryWideScope {
		t.Errorf("registry-wide: %+v", got)
	}
	if got, _ := v.result(ctx, "push", noWake); got.status != metav1.ConditionFalse || got.reason != acrv1beta2.ReasonScopeDenied {
		t.Errorf("push only: %+v", got)
	}
	if checker.calls.Load() != 1 {
		t.Errorf("%d checks; scopes without a repository to pull need none", checker.calls.Load())
	}
	if _, ok := v.result(ctx, "never-started", noWake); ok {
		t.Error("a credential never checked has a result")
	}
	clk.SetTime(expires)
	v.start(ctx, "b", expires.Add(time.Hour), "r.azurecr.io", "repository:app:pull", azauth.Token{})
	if _, ok := v.result(ctx, "a", noWake); ok {
		t.Error("the check of an expired credential is kept")
	}
}

func noWake() {}

// heldChecker answers every check with PullVerified once released, as a slow registry would.
type heldChecker struct{ release chan struct{} }

func (c heldChecker) CheckPull(context.Context, string, string, azauth.Token) azauth.PullCheck {
	<-c.release
	return azauth.PullCheck{Outcome: azauth.PullVerified, Detail: "listed"}
}

// A pass waits for a check under way only until pullCheckPatience after it started: a slow registry holds no worker.
// The binding is woken when the verdict comes in, and its next pass has it at once.
func TestPullVerifierWaitsNoLongerThanItsPatience(t *testing.T) {
	ctx := context.Background()
	clk := clocktesting.NewFakeClock(unitNow)
	checker := heldChecker{release: make(chan struct{})}
	v := newPullVerifier(checker, discardMetrics{}, clk)
	v.start(ctx, "slow", unitNow.Add(time.Hour), "r.azurecr.io", "repository:app:pull", azauth.Token{})

	// Within its patience a pass waits: the verdict reaches it once the registry answers.
	waited := make(chan bool)
	go func() {
		_, ok := v.result(ctx, "slow", noWake)
		waited <- ok
	}()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	clk.Step(pullCheckPatience)
	if ok := <-waited; ok {
		t.Fatal("a verdict before the registry answered")
	}
	// Past it, a pass does not wait at all, and asks to be woken.
	var woken atomic.Int32
	if _, ok := v.result(ctx, "slow", func() { woken.Add(1) }); ok {
		t.Fatal("a verdict before the registry answered")
	}
	if clk.HasWaiters() {
		t.Error("a pass past the check's patience is waiting")
	}
	close(checker.release)
	deadline := time.Now().Add(10 * time.Second)
	for woken.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// The wake-up comes after the verdict is recorded: the pass it brings finds it.
	if got, ok := v.result(ctx, "slow", noWake); !ok || got.reason != acrv1beta2.ReasonPullVerified {
		t.Errorf("after the answer: %+v %v", got, ok)
	}
	if woken.Load() != 1 {
		t.Errorf("woken %d times; want 1 (the first pass asked for no wake-up)", woken.Load())
	}
}

// With verification off, a Verified condition left from when it was on is removed.
func TestVerifiedConditionRemovedWhenOff(t *testing.T) {
	r := &reconciler{Metrics: discardMetrics{}, api: v1beta2API{}}
	s := newScope(v1beta2Binding{&acrv1beta2.AcrPullBinding{}}, unitNow)
	s.status.Conditions = []metav1.Condition{{Type: acrv1beta2.ConditionVerified, Status: metav1.ConditionTrue, Reason: acrv1beta2.ReasonPullVerified}}
	r.reportVerification(s)
	if c := meta.FindStatusCondition(s.status.Conditions, acrv1beta2.ConditionVerified); c != nil {
		t.Errorf("Verified kept with verification off: %+v", c)
	}
}

// A Warning Event marks entering a failed verification the binding's author must fix, or a new such reason; nothing
// else.
func TestVerifiedTransition(t *testing.T) {
	cond := func(status metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: acrv1beta2.ConditionVerified, Status: status, Reason: reason}}
	}
	for _, tc := range []struct {
		before, after []metav1.Condition
		emit          bool
	}{
		{nil, cond(metav1.ConditionFalse, "ScopeDenied"), true},
		{cond(metav1.ConditionTrue, "PullVerified"), cond(metav1.ConditionFalse, "ScopeDenied"), true},
		{cond(metav1.ConditionFalse, "RegistryUnreachable"), cond(metav1.ConditionFalse, "ScopeDenied"), true},
		{cond(metav1.ConditionFalse, "ScopeDenied"), cond(metav1.ConditionFalse, "ScopeDenied"), false},
		{nil, cond(metav1.ConditionTrue, "PullVerified"), false},
		{nil, cond(metav1.ConditionFalse, "RegistryUnreachable"), false},
		{cond(metav1.ConditionFalse, "ScopeDenied"), cond(metav1.ConditionFalse, "RegistryUnreachable"), false},
		{nil, cond(metav1.ConditionUnknown, "RegistryWideScope"), false},
		{cond(metav1.ConditionFalse, "ScopeDenied"), nil, false},
	} {
		if _, _, emit := verifiedTransition(tc.before, tc.after); emit != tc.emit {
			t.Errorf("%v -> %v: emit %v, want %v", tc.before, tc.after, emit, tc.emit)
		}
	}
}
