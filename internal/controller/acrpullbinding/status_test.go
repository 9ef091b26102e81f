/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
)

var unitNow = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// unitScope is a pass over a v1beta2 binding with the given Ready condition, as read.
func unitScope(was *metav1.Condition) *scope {
	b := &acrv1beta2.AcrPullBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "b", Generation: 3}}
	b.Spec.ServiceAccountName = "sa"
	if was != nil {
		b.Status.Conditions = []metav1.Condition{*was}
	}
	s := newScope(v1beta2Binding{b}, unitNow)
	s.desired.targetServiceAccount = "sa"
	return s
}

func secretValidFor(d time.Duration) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "acr-pull-b", Annotations: map[string]string{
		RefreshAnnotation: unitNow.Add(-time.Hour).Format(time.RFC3339),
		ExpiryAnnotation:  unitNow.Add(d).Format(time.RFC3339),
	}}}
}

func TestSummarizeStatus(t *testing.T) {
	sa := &corev1.ServiceAccount{}
	apiDown := apierrors.NewServiceUnavailable("etcd is unwell")
	for _, tc := range []struct {
		name       string
		failure    *failure
		targetSA   *corev1.ServiceAccount
		secret     *metav1.PartialObjectMetadata
		passErr    error
		wantReason string
		wantStatus metav1.ConditionStatus
		wantGen    int64
	}{
		{"minted and attached", nil, sa, secretValidFor(time.Hour), nil, acrv1beta2.ReasonTokenMinted, metav1.ConditionTrue, 3},
		{"a failure wins over everything", &failure{reason: "RegistryDenied", message: "no"}, sa, secretValidFor(time.Hour), nil, "RegistryDenied", metav1.ConditionFalse, 3},
		{"no account", nil, nil, nil, nil, acrv1beta2.ReasonServiceAccountNotFound, metav1.ConditionFalse, 3},
		{"apiserver failed before the account was read: not ServiceAccountNotFound", nil, nil, nil, apiDown, acrv1beta2.ReasonKubernetesAPIError, metav1.ConditionFalse, 0},
		{"apiserver failed before a secret was written: not AzureUnavailable", nil, sa, nil, apiDown, acrv1beta2.ReasonKubernetesAPIError, metav1.ConditionFalse, 0},
		{"a conflict is retried at once and changes nothing", nil, sa, nil,
			apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, "acr-pull-b", errors.New("changed")), acrv1beta2.ReasonAzureUnavailable, metav1.ConditionFalse, 0},
		{"an apiserver error after the secret is attached keeps Ready", nil, sa, secretValidFor(time.Hour), apiDown, acrv1beta2.ReasonTokenMinted, metav1.ConditionTrue, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := unitScope(nil)
			s.failure, s.targetSA, s.secret = tc.failure, tc.targetSA, tc.secret
			summarizeStatus(s, tc.passErr)
			ready := meta.FindStatusCondition(s.status.Conditions, acrv1beta2.ConditionReady)
			if ready.Reason != tc.wantReason || ready.Status != tc.wantStatus {
				t.Fatalf("Ready %s/%s (%s), want %s/%s", ready.Status, ready.Reason, ready.Message, tc.wantStatus, tc.wantReason)
			}
			if s.status.ObservedGeneration != tc.wantGen {
				t.Errorf("observedGeneration %d, want %d", s.status.ObservedGeneration, tc.wantGen)
			}
			if (ready.Status == metav1.ConditionTrue) != (s.status.Error == "") {
				t.Errorf("status.error %q with Ready %s", s.status.Error, ready.Status)
			}
		})
	}
}

func TestReadyTransition(t *testing.T) {
	cond := func(status metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: acrv1beta2.ConditionReady, Status: status, Reason: reason}}
	}
	for _, tc := range []struct {
		name          string
		before, after []metav1.Condition
		want          string // event type, "" for none
	}{
		{"first failure", nil, cond(metav1.ConditionFalse, "AzureUnavailable"), corev1.EventTypeWarning},
		{"ready to failing", cond(metav1.ConditionTrue, "TokenMinted"), cond(metav1.ConditionFalse, "AzureUnavailable"), corev1.EventTypeWarning},
		{"a new failure reason", cond(metav1.ConditionFalse, "AzureUnavailable"), cond(metav1.ConditionFalse, "RegistryDenied"), corev1.EventTypeWarning},
		{"the same failure again: quiet", cond(metav1.ConditionFalse, "AzureUnavailable"), cond(metav1.ConditionFalse, "AzureUnavailable"), ""},
		{"recovery", cond(metav1.ConditionFalse, "AzureUnavailable"), cond(metav1.ConditionTrue, "TokenMinted"), corev1.EventTypeNormal},
		{"first success: quiet", nil, cond(metav1.ConditionTrue, "TokenMinted"), ""},
		{"refresh: quiet", cond(metav1.ConditionTrue, "TokenMinted"), cond(metav1.ConditionTrue, "TokenMinted"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eventType, _, _, emit := readyTransition(tc.before, tc.after)
			if emit != (tc.want != "") || eventType != tc.want {
				t.Fatalf("event %q (emit %v), want %q", eventType, emit, tc.want)
			}
		})
	}
}

func TestFailureOf(t *testing.T) {
	azErr := &azauth.Error{Kind: azauth.IdentityNotFederated, Endpoint: azauth.EndpointEntra, Detail: "Entra ID refused the identity", StatusCode: 400, Code: "AADSTS70021"}
	for _, tc := range []struct {
		err        error
		wantReason string
	}{
		{azErr, string(azauth.IdentityNotFederated)},
		{&serviceAccountTokenError{namespace: "ns", name: "sa", err: errors.New("forbidden")}, acrv1beta2.ReasonServiceAccountTokenFailed},
		{errors.New("something unclassified"), acrv1beta2.ReasonAzureUnavailable},
	} {
		reason, message := failureOf(tc.err)
		if reason != tc.wantReason || message == "" {
			t.Errorf("failureOf(%v) = %q, %q; want reason %q", tc.err, reason, message, tc.wantReason)
		}
	}
}

func TestLowestNonZero(t *testing.T) {
	r := func(d time.Duration) ctrl.Result { return ctrl.Result{RequeueAfter: d} }
	for _, tc := range []struct{ a, b, want time.Duration }{
		{0, 0, 0}, {0, time.Second, time.Second}, {time.Second, 0, time.Second}, {time.Minute, time.Second, time.Second}, {time.Second, time.Minute, time.Second},
	} {
		if got := lowestNonZero(r(tc.a), r(tc.b)).RequeueAfter; got != tc.want {
			t.Errorf("lowestNonZero(%s, %s) = %s, want %s", tc.a, tc.b, got, tc.want)
		}
	}
}

type discardMetrics struct{}

func (discardMetrics) TokenExpiry(string, string, string, time.Time)              {}
func (discardMetrics) ForgetBinding(string, string, string)                       {}
func (discardMetrics) MintAttempt(string, string)                                 {}
func (discardMetrics) BindingReadiness(string, string, string, string, string)    {}
func (discardMetrics) BindingVerification(string, string, string, string, string) {}
func (discardMetrics) PullCheck(string)                                           {}

// The retry of a failed mint: as Azure asked, else backing off with the failure's age within [2 s, 5 min], and never
// past a quarter of what is left of a still-valid token, so a token is retried several times before it expires.
func TestMintFailedBackoffBounds(t *testing.T) {
	r := &reconciler{Metrics: discardMetrics{}, api: v1beta2API{}}
	failingSince := func(d time.Duration) *metav1.Condition {
		return &metav1.Condition{Type: acrv1beta2.ConditionReady, Status: metav1.ConditionFalse, Reason: "AzureUnavailable",
			LastTransitionTime: metav1.NewTime(unitNow.Add(-d))}
	}
	unavailable := &azauth.Error{Kind: azauth.Unavailable, Endpoint: azauth.EndpointEntra, Detail: "no response"}
	for _, tc := range []struct {
		name   string
		was    *metav1.Condition
		secret *metav1.PartialObjectMetadata
		err    error
		want   time.Duration
	}{
		{"first failure: the floor", nil, nil, unavailable, 2 * time.Second},
		{"failing for a minute: a minute", failingSince(time.Minute), nil, unavailable, time.Minute},
		{"failing for an hour: the ceiling", failingSince(time.Hour), nil, unavailable, 5 * time.Minute},
		{"Retry-After wins", failingSince(time.Hour), nil, &azauth.Error{Kind: azauth.Throttled, RetryAfter: 17 * time.Second}, 17 * time.Second},
		{"a quarter of the remaining token life", failingSince(time.Hour), secretValidFor(8 * time.Minute), unavailable, 2 * time.Minute},
		{"an expired token's secret does not bound it", failingSince(time.Hour), secretValidFor(-time.Minute), unavailable, 5 * time.Minute},
		{"a token about to expire: still at least a second", failingSince(time.Hour), secretValidFor(2 * time.Second), unavailable, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := unitScope(tc.was)
			s.secret = tc.secret
			if got := r.mintFailed(s, tc.err).RequeueAfter; got != tc.want {
				t.Fatalf("retry in %s, want %s", got, tc.want)
			}
			if s.failure == nil || s.failure.cause != tc.err {
				t.Fatalf("the failure keeps its cause for the log: %+v", s.failure)
			}
		})
	}
}

// An operator reads why a binding fails in the log: entering a failure is an error line with the cause, a further
// failed pass a debug line, recovery an info line; a steady Ready binding logs nothing.
func TestLogReadiness(t *testing.T) {
	var buf bytes.Buffer
	log := funcr.New(func(prefix, args string) { buf.WriteString(prefix + " " + args + "\n") }, funcr.Options{Verbosity: 1})
	cause := &azauth.Error{Kind: azauth.Unavailable, Endpoint: azauth.EndpointEntra, Detail: "no response: proxy 127.0.0.1:3128 refused the connection"}

	failing := unitScope(nil)
	failing.targetSA, failing.secret = &corev1.ServiceAccount{}, secretValidFor(time.Hour)
	failing.failBecause(string(cause.Kind), cause.Error(), cause)
	summarizeStatus(failing, nil)
	_, _, _, transition := readyTransition(failing.original.Conditions, failing.status.Conditions)
	logReadiness(log, failing, transition)
	if line := buf.String(); !strings.Contains(line, `"error"="entra: no response: proxy 127.0.0.1:3128 refused the connection"`) ||
		!strings.Contains(line, `"msg"="Binding is not ready"`) || !strings.Contains(line, `"reason"="AzureUnavailable"`) {
		t.Fatalf("entering a failure logged %q", line)
	}

	buf.Reset()
	again := unitScope(&failing.status.Conditions[0])
	again.targetSA, again.secret = failing.targetSA, failing.secret
	again.failBecause(string(cause.Kind), cause.Error(), cause)
	summarizeStatus(again, nil)
	_, _, _, transition = readyTransition(again.original.Conditions, again.status.Conditions)
	logReadiness(log, again, transition)
	if line := buf.String(); transition || !strings.Contains(line, `"level"=1`) || !strings.Contains(line, "Binding still not ready") {
		t.Fatalf("a further failed pass logged %q (transition %v)", line, transition)
	}

	buf.Reset()
	recovered := unitScope(&failing.status.Conditions[0])
	recovered.targetSA, recovered.secret = failing.targetSA, failing.secret
	summarizeStatus(recovered, nil)
	_, _, _, transition = readyTransition(recovered.original.Conditions, recovered.status.Conditions)
	logReadiness(log, recovered, transition)
	if line := buf.String(); !strings.Contains(line, `"level"=0`) || !strings.Contains(line, "Binding recovered") {
		t.Fatalf("recovery logged %q", line)
	}

	buf.Reset()
	steady := unitScope(&recovered.status.Conditions[0])
	steady.targetSA, steady.secret = failing.targetSA, failing.secret
	summarizeStatus(steady, nil)
	_, _, _, transition = readyTransition(steady.original.Conditions, steady.status.Conditions)
	logReadiness(log, steady, transition)
	if buf.Len() != 0 {
		t.Fatalf("a steady Ready binding logged %q", buf.String())
	}
}

// SetupWithManager is the one way to build the reconcilers: it refuses what would panic later.
func TestSetupRefusesIncompleteDeps(t *testing.T) {
	for _, d := range []Deps{{}, {Minter: nil, Metrics: discardMetrics{}}, {Metrics: discardMetrics{}, Recorder: nil}} {
		if err := SetupWithManager(nil, d); err == nil {
			t.Errorf("SetupWithManager accepted %+v", d)
		}
	}
}
