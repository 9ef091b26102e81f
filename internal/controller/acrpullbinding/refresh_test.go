/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/acrpull/acrpull/internal/azauth"
)

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

func TestFractionOfLifetimeSpreadsBelowTheFraction(t *testing.T) {
	p := fractionOfLifetime(0.5)
	exp := t0.Add(75 * time.Minute)
	if got := p.refreshAt(t0, exp, 0); !got.Equal(t0.Add(37*time.Minute + 30*time.Second)) {
		t.Errorf("spread 0 refreshes at %s, want half the lifetime", got)
	}
	earliest := p.refreshAt(t0, exp, 1)
	if want := t0.Add(30 * time.Minute); !earliest.Equal(want) {
		t.Errorf("earliest refresh %s, want %s (fraction*(1-maxJitter))", earliest, want)
	}
}

func TestBeforeExpiryNeverRefreshesInTheFirstHalf(t *testing.T) {
	p := beforeExpiry(30 * time.Minute)
	if got := p.refreshAt(t0, t0.Add(3*time.Hour), 0); !got.Equal(t0.Add(150 * time.Minute)) {
		t.Errorf("3h token refreshes at %s, want 30 minutes before expiry", got)
	}
	if got := p.refreshAt(t0, t0.Add(20*time.Minute), 0.5); !got.Equal(t0.Add(10 * time.Minute)) {
		t.Errorf("20m token refreshes at %s, want half its life", got)
	}
}

// A token the cache considers fresh must never be due for refresh for any binding: otherwise a binding would be
// handed a token it immediately wants to replace, and spin.
func TestCacheFreshnessImpliesNotDue(t *testing.T) {
	for _, p := range []refreshPolicy{fractionOfLifetime(0.5), fractionOfLifetime(0.01), beforeExpiry(30 * time.Minute)} {
		for _, life := range []time.Duration{time.Minute, 75 * time.Minute, 3 * time.Hour} {
			tok := azauth.Token{IssuedAt: t0, ExpiresAt: t0.Add(life)}
			for step := time.Duration(0); step < life; step += life / 97 {
				now := t0.Add(step)
				if !freshFor(p, func() time.Time { return now })(tok) {
					continue
				}
				for _, uid := range []string{"a", "b", "c", "d", "e", "f"} {
					if !now.Before(p.refreshAt(tok.IssuedAt, tok.ExpiresAt, spreadOf(uid))) {
						t.Fatalf("%T %v: token fresh at +%s but due for binding %s", p, life, step, uid)
					}
				}
			}
		}
	}
}

func TestMintDueReadsTheSecret(t *testing.T) {
	p := fractionOfLifetime(0.5)
	secret := secretMetadata()
	secret.Annotations = map[string]string{
		InputsAnnotation:  "h1",
		RefreshAnnotation: t0.Format(time.RFC3339),
		ExpiryAnnotation:  t0.Add(time.Hour).Format(time.RFC3339),
	}
	cases := map[string]struct {
		secret *metav1.PartialObjectMetadata
		inputs string
		now    time.Time
		due    bool
	}{
		"missing secret":      {nil, "h1", t0, true},
		"inputs changed":      {secret, "h2", t0.Add(time.Minute), true},
		"fresh":               {secret, "h1", t0.Add(10 * time.Minute), false},
		"past refresh point":  {secret, "h1", t0.Add(31 * time.Minute), true},
		"corrupt annotations": {withAnnotation(secret, ExpiryAnnotation, "soon"), "h1", t0, true},
	}
	for name, tc := range cases {
		if due, _ := mintDue(tc.secret, tc.inputs, p, 0, tc.now); due != tc.due {
			t.Errorf("%s: due = %v, want %v", name, due, tc.due)
		}
	}
}

func withAnnotation(m *metav1.PartialObjectMetadata, k, v string) *metav1.PartialObjectMetadata {
	cp := m.DeepCopy()
	cp.Annotations[k] = v
	return cp
}

// A scheduled refresh waits in the queue behind bindings that events brought in (created, changed: priority 0), and
// keeps that low priority when merged with another phase's later requeue; a sooner requeue from elsewhere (a retry)
// carries its own priority.
func TestScheduledRefreshYieldsToEvents(t *testing.T) {
	refresh := scheduledRefresh(time.Minute)
	if refresh.Priority == nil || *refresh.Priority >= 0 {
		t.Fatalf("scheduled refresh priority = %v, want below the default 0 that events get", refresh.Priority)
	}
	if got := lowestNonZero(refresh, ctrl.Result{RequeueAfter: time.Hour}); got.Priority == nil || *got.Priority != *refresh.Priority {
		t.Errorf("merged with a later requeue, the refresh lost its priority: %+v", got)
	}
	if got := lowestNonZero(refresh, ctrl.Result{RequeueAfter: time.Second}); got.Priority != nil {
		t.Errorf("a sooner requeue from another phase took the refresh's priority: %+v", got)
	}
}
