/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// summarizeStatus derives the status from what the pass observed: the token's times and audience from the secret
// itself, and the Ready condition from the first failure, else the service account, else success.
func summarizeStatus(s *scope, passErr error) {
	succeeded := passErr == nil
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
	case passErr != nil && !apierrors.IsConflict(passErr) && (s.targetSA == nil || s.secret == nil):
		// The pass stopped at the apiserver before it learnt whether the account exists or a credential is written:
		// that is what to say, not that the account is missing or Azure failed. (A conflict is retried at once.)
		ready.Status, ready.Reason = metav1.ConditionFalse, acrv1beta2.ReasonKubernetesAPIError
		ready.Message = "Kubernetes API request failed: " + passErr.Error()
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

// logReadiness logs what the Ready condition says, at the level an operator needs: entering a failure (the moment the
// Warning Event fires) at error level with its cause, each further failed pass at debug level, recovery at info.
func logReadiness(log logr.Logger, s *scope, transition bool) {
	ready := meta.FindStatusCondition(s.status.Conditions, acrv1beta2.ConditionReady)
	if ready == nil {
		return
	}
	switch {
	case ready.Status == metav1.ConditionTrue && transition:
		log.Info("Binding recovered", "reason", ready.Reason, "message", ready.Message)
	case ready.Status == metav1.ConditionFalse:
		var cause error
		if s.failure != nil {
			cause = s.failure.cause
		}
		if cause == nil {
			cause = errors.New(ready.Message)
		}
		if transition {
			log.Error(cause, "Binding is not ready", "reason", ready.Reason, "message", ready.Message)
		} else {
			log.V(1).Info("Binding still not ready", "reason", ready.Reason, "error", cause.Error())
		}
	}
}
