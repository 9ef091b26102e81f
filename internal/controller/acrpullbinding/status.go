/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// summarizeStatus derives the status from what the pass observed: the token's times and audience from the secret
// itself, and the Ready condition from the first failure, else the service account, else success.
func summarizeStatus(s *scope, succeeded bool) {
	st := &s.status
	gen := s.binding.object().GetGeneration()
	if s.secret != nil {
		if issued, expires, ok := tokenTimes(s.secret.Annotations); ok {
			st.LastTokenRefreshTime, st.TokenExpirationTime = metaTime(issued), metaTime(expires)
		}
		// Whichever pass minted the token (this one, or a sibling's through shareCredential), the secret says what
		// it was minted for. Secrets written before the annotation existed leave the status as it was.
		if audience := s.secret.Annotations[AudienceAnnotation]; audience != "" {
			st.TokenAudience = audience
		}
	}
	ready := metav1.Condition{Type: acrv1beta2.ConditionReady, ObservedGeneration: gen}
	switch {
	case s.failure != nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, s.failure.reason, s.failure.message
	case s.targetSA == nil:
		ready.Status, ready.Reason = metav1.ConditionFalse, acrv1beta2.ReasonServiceAccountNotFound
		ready.Message = fmt.Sprintf("service account %q not found; the secret is attached when it appears", s.desired.targetServiceAccount)
	case s.secret == nil:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, acrv1beta2.ReasonAzureUnavailable, "no credential minted yet"
	default:
		ready.Status, ready.Reason = metav1.ConditionTrue, acrv1beta2.ReasonTokenMinted
		ready.Message = fmt.Sprintf("secret %s holds a token valid until %s and is attached to service account %s",
			s.secret.Name, st.TokenExpirationTime.UTC().Format(time.RFC3339), s.desired.targetServiceAccount)
	}
	if ready.Status == metav1.ConditionTrue {
		st.Error = ""
	} else {
		st.Error = ready.Message
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	if succeeded {
		st.ObservedGeneration = gen
	}
}

// readyTransition says which Event, if any, a pass should emit: a Warning when the binding enters a new failure, a
// Normal one when it recovers. Steady states emit nothing, so refreshes do not flood the Event stream.
func readyTransition(before, after []metav1.Condition) (eventType, reason, message string, emit bool) {
	now := meta.FindStatusCondition(after, acrv1beta2.ConditionReady)
	if now == nil {
		return "", "", "", false
	}
	was := meta.FindStatusCondition(before, acrv1beta2.ConditionReady)
	switch {
	case now.Status == metav1.ConditionFalse && (was == nil || was.Status != metav1.ConditionFalse || was.Reason != now.Reason):
		return corev1.EventTypeWarning, now.Reason, now.Message, true
	case now.Status == metav1.ConditionTrue && was != nil && was.Status == metav1.ConditionFalse:
		return corev1.EventTypeNormal, "Recovered", now.Message, true
	}
	return "", "", "", false
}
