/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"hash/fnv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	"github.com/acrpull/acrpull/internal/azauth"
)

// maxJitter is the share of the refresh point that bindings spread over, so bindings sharing a token do not all
// rewrite their secrets in the same second. The token cache mints once, at the earliest point of the spread.
const maxJitter = 0.2

// refreshPolicy says when a token should be replaced. spread in [0,1) moves a binding's point earlier; spread 1 is
// the earliest point any binding can have.
type refreshPolicy interface {
	refreshAt(issued, expires time.Time, spread float64) time.Time
}

// fractionOfLifetime refreshes after a fraction of the token's life (v1beta2's --ttl-rotation-fraction).
type fractionOfLifetime float64

func (f fractionOfLifetime) refreshAt(issued, expires time.Time, spread float64) time.Time {
	life := expires.Sub(issued)
	return issued.Add(time.Duration(float64(life) * float64(f) * (1 - maxJitter*spread)))
}

// beforeExpiry refreshes a fixed margin before expiry (msi-acrpull v1beta1: 30 minutes), but never in the first half
// of a short-lived token's life, which would mean refreshing constantly.
type beforeExpiry time.Duration

func (m beforeExpiry) refreshAt(issued, expires time.Time, spread float64) time.Time {
	life := expires.Sub(issued)
	at := expires.Add(-time.Duration(m)).Add(-time.Duration(float64(life) * maxJitter * 0.5 * spread))
	if half := issued.Add(life / 2); at.Before(half) {
		return half
	}
	return at
}

// spreadOf places a binding in the refresh spread: stable for the binding, different between bindings.
func spreadOf(uid string) float64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(uid))
	return float64(h.Sum64()%10000) / 10000
}

// freshFor is the cache's freshness test for a policy: a token is fresh until the earliest point any binding would
// refresh it, so a binding never receives a token it would immediately want to replace.
func freshFor(p refreshPolicy, now func() time.Time) func(azauth.Token) bool {
	return func(t azauth.Token) bool { return now().Before(p.refreshAt(t.IssuedAt, t.ExpiresAt, 1)) }
}

// tokenTimes reads the issue and expiry times a secret records; ok is false when either is missing or unreadable.
func tokenTimes(annotations map[string]string) (issued, expires time.Time, ok bool) {
	var err1, err2 error
	issued, err1 = time.Parse(time.RFC3339, annotations[RefreshAnnotation])
	expires, err2 = time.Parse(time.RFC3339, annotations[ExpiryAnnotation])
	return issued, expires, err1 == nil && err2 == nil && expires.After(issued)
}

func metaTime(t time.Time) *metav1.Time {
	mt := metav1.NewTime(t)
	return &mt
}

// scheduledRefresh requeues a binding for its next refresh at low priority. A refresh falls due with a good part of
// its token's life left, while a binding created or changed (an event, at the queue's default priority) has no usable
// secret at all: on a busy cluster a wave of refreshes falling due together must not make new bindings wait behind
// it. The priority holds for this requeue only; an event for the binding in the meantime enqueues it at its own.
func scheduledRefresh(after time.Duration) ctrl.Result {
	return ctrl.Result{RequeueAfter: after, Priority: ptrTo(handler.LowPriority)}
}
