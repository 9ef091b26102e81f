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
	st.Error = ""
	switch {
	case s.failure != nil && s.stillServes():
		// Ready says whether what the binding produced works now (the condition's definition, and cert-manager's rule
		// for a certificate whose renewal fails): pulls go on with the held token, so a refresh Azure fails for now
		// does not turn the binding not Ready, nor an outage every binding not Ready and back. The reason and the
		// error field name the failure; the token's expiry, if the failure outlasts it, turns the binding not Ready.
		ready.Status, ready.Reason = metav1.ConditionTrue, s.failure.reason
		ready.Message = fmt.Sprintf("secret %s holds a token valid until %s and is attached to service account %s; refreshing it failed: %s",
			s.secret.Name, s.heldExpiry.UTC().Format(time.RFC3339), s.desired.targetServiceAccount, s.failure.message)
		st.Error = s.failure.message
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
	if ready.Status == metav1.ConditionFalse {
		st.Error = ready.Message
	}
	meta.SetStatusCondition(&st.Conditions, ready)
	if succeeded {
		st.ObservedGeneration = gen
	}
}

// stillServes says whether the pass's failure leaves the binding Ready: Azure's to clear by itself, while the secret
// holds an unexpired token minted for the current spec and the target account exists to list it.
func (s *scope) stillServes() bool {
	return transient(s.failure.reason) && s.secret != nil && s.targetSA != nil && s.heldExpiry.After(s.now)
}

// failingReason is the failure a Ready condition reports: its reason when False, or when True while a transient
// failure leaves the held token serving; "" for a binding that simply works.
func failingReason(c *metav1.Condition) string {
	switch {
	case c == nil:
		return ""
	case c.Status == metav1.ConditionFalse:
		return c.Reason
	case transient(c.Reason):
		return c.Reason
	}
	return ""
}

// readyTransition says which Event, if any, a pass should emit: a Warning when the binding starts failing for a new
// reason, or its held token expires while it fails; a Normal one when it recovers from a failure someone had to act
// on. Steady states emit nothing, so refreshes do not flood the Event stream, and an Azure outage costs each binding
// one Event: its recovery shows in the condition and the log.
func readyTransition(before, after []metav1.Condition) (eventType, reason, message string, emit bool) {
	now := meta.FindStatusCondition(after, acrv1beta2.ConditionReady)
	if now == nil {
		return "", "", "", false
	}
	was := meta.FindStatusCondition(before, acrv1beta2.ConditionReady)
	nowFailing, wasFailing := failingReason(now), failingReason(was)
	switch {
	case nowFailing != "" && (nowFailing != wasFailing || now.Status == metav1.ConditionFalse && was.Status != metav1.ConditionFalse):
		return corev1.EventTypeWarning, now.Reason, now.Message, true
	case nowFailing == "" && now.Status == metav1.ConditionTrue && wasFailing != "" && !transient(wasFailing):
		return corev1.EventTypeNormal, "Recovered", now.Message, true
	}
	return "", "", "", false
}

// logReadiness logs what the pass did to the Ready condition, at the level an operator needs: a failure someone must
// act on at error level with its cause, when it starts; a transient one (Azure's to clear) at info; each further
// failed pass at debug level; recovery at info.
func logReadiness(log logr.Logger, s *scope) {
	now := meta.FindStatusCondition(s.status.Conditions, acrv1beta2.ConditionReady)
	if now == nil {
		return
	}
	was := meta.FindStatusCondition(s.original.Conditions, acrv1beta2.ConditionReady)
	nowFailing, wasFailing := failingReason(now), failingReason(was)
	if nowFailing == "" {
		if wasFailing != "" {
			log.Info("Binding recovered", "reason", now.Reason, "message", now.Message)
		}
		return
	}
	var cause error
	if s.failure != nil {
		cause = s.failure.cause
	}
	if cause == nil {
		cause = errors.New(s.status.Error)
	}
	msg := "Binding is not ready"
	if now.Status == metav1.ConditionTrue {
		msg = "Binding's token could not be refreshed; it stays ready until the token expires"
	}
	switch {
	case nowFailing == wasFailing && (now.Status != metav1.ConditionFalse || was.Status == metav1.ConditionFalse):
		log.V(1).Info("Binding still failing", "ready", now.Status, "reason", now.Reason, "error", cause.Error())
	case transient(nowFailing):
		log.Info(msg, "reason", now.Reason, "message", now.Message, "error", cause.Error())
	default:
		log.Error(cause, msg, "reason", now.Reason, "message", now.Message)
	}
}
