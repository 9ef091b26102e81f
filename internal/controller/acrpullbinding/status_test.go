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
	unavailable := &failure{reason: acrv1beta2.ReasonAzureUnavailable, message: "entra: no response"}
	throttled := &failure{reason: acrv1beta2.ReasonAzureThrottled, message: "entra: 429"}
	inAnHour, aMinuteAgo := unitNow.Add(time.Hour), unitNow.Add(-time.Minute)
	for _, tc := range []struct {
		name       string
		failure    *failure
		targetSA   *corev1.ServiceAccount
		secret     *metav1.PartialObjectMetadata
		heldExpiry time.Time
		passErr    error
		wantReason string
		wantStatus metav1.ConditionStatus
		wantGen    int64
	}{
		{"minted and attached", nil, sa, secretValidFor(time.Hour), time.Time{}, nil, acrv1beta2.ReasonTokenMinted, metav1.ConditionTrue, 3},
		{"a refusal wins over everything", &failure{reason: "RegistryDenied", message: "no"}, sa, secretValidFor(time.Hour), inAnHour, nil, "RegistryDenied", metav1.ConditionFalse, 3},
		{"Azure fails while the held token is valid: Ready, the failure named", unavailable, sa, secretValidFor(time.Hour), inAnHour, nil, acrv1beta2.ReasonAzureUnavailable, metav1.ConditionTrue, 3},
		{"throttled while the held token is valid: Ready", throttled, sa, secretValidFor(time.Hour), inAnHour, nil, acrv1beta2.ReasonAzureThrottled, metav1.ConditionTrue, 3},
		{"Azure fails and the held token expired: not Ready", unavailable, sa, secretValidFor(-time.Minute), aMinuteAgo, nil, acrv1beta2.ReasonAzureUnavailable, metav1.ConditionFalse, 3},
		{"Azure fails and the secret was minted for another spec: not Ready", unavailable, sa, secretValidFor(time.Hour), time.Time{}, nil, acrv1beta2.ReasonAzureUnavailable, metav1.ConditionFalse, 3},
		{"Azure fails and the account is gone: not Ready", unavailable, nil, secretValidFor(time.Hour), inAnHour, nil, acrv1beta2.ReasonAzureUnavailable, metav1.ConditionFalse, 3},
		{"no account", nil, nil, nil, time.Time{}, nil, acrv1beta2.ReasonServiceAccountNotFound, metav1.ConditionFalse, 3},
		{"apiserver failed before the account was read: not ServiceAccountNotFound", nil, nil, nil, time.Time{}, apiDown, acrv1beta2.ReasonKubernetesAPIError, metav1.ConditionFalse, 0},
		{"apiserver failed before a secret was written: not AzureUnavailable", nil, sa, nil, time.Time{}, apiDown, acrv1beta2.ReasonKubernetesAPIError, metav1.ConditionFalse, 0},
		{"a conflict is retried at once and changes nothing", nil, sa, nil, time.Time{},
			apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, "acr-pull-b", errors.New("changed")), acrv1beta2.ReasonAzureUnavailable, metav1.ConditionFalse, 0},
		{"an apiserver error after the secret is attached keeps Ready", nil, sa, secretValidFor(time.Hour), time.Time{}, apiDown, acrv1beta2.ReasonTokenMinted, metav1.ConditionTrue, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := unitScope(nil)
			s.failure, s.targetSA, s.secret, s.heldExpiry = tc.failure, tc.targetSA, tc.secret, tc.heldExpiry
			summarizeStatus(s, tc.passErr)
			ready := meta.FindStatusCondition(s.status.Conditions, acrv1beta2.ConditionReady)
			if ready.Reason != tc.wantReason || ready.Status != tc.wantStatus {
				t.Fatalf("Ready %s/%s (%s), want %s/%s", ready.Status, ready.Reason, ready.Message, tc.wantStatus, tc.wantReason)
			}
			if s.status.ObservedGeneration != tc.wantGen {
				t.Errorf("observedGeneration %d, want %d", s.status.ObservedGeneration, tc.wantGen)
			}
			// status.error (msi-acrpull's field) says what fails, whether or not the held token still serves.
			if (ready.Reason == acrv1beta2.ReasonTokenMinted) != (s.status.Error == "") {
				t.Errorf("status.error %q with Ready %s/%s", s.status.Error, ready.Status, ready.Reason)
			}
			if tc.failure != nil && !strings.Contains(ready.Message, tc.failure.message) {
				t.Errorf("Ready's message %q does not say what failed (%q)", ready.Message, tc.failure.message)
			}
		})
	}
}

func TestReadyTransition(t *testing.T) {
	cond := func(status metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: acrv1beta2.ConditionReady, Status: status, Reason: reason}}
	}
	const ok, unavailable, denied = "TokenMinted", "AzureUnavailable", "RegistryDenied"
	T, F := metav1.ConditionTrue, metav1.ConditionFalse
	for _, tc := range []struct {
		name          string
		before, after []metav1.Condition
		want          string // event type, "" for none
	}{
		{"first failure", nil, cond(F, unavailable), corev1.EventTypeWarning},
		{"ready to failing", cond(T, ok), cond(F, denied), corev1.EventTypeWarning},
		{"a refresh fails while the held token serves", cond(T, ok), cond(T, unavailable), corev1.EventTypeWarning},
		{"the held token expires while Azure still fails", cond(T, unavailable), cond(F, unavailable), corev1.EventTypeWarning},
		{"a new failure reason", cond(F, unavailable), cond(F, denied), corev1.EventTypeWarning},
		{"the same failure again: quiet", cond(F, unavailable), cond(F, unavailable), ""},
		{"the same transient failure while serving: quiet", cond(T, unavailable), cond(T, unavailable), ""},
		{"recovery from a failure someone acted on", cond(F, denied), cond(T, ok), corev1.EventTypeNormal},
		{"recovery from an outage: quiet (one Event per outage)", cond(F, unavailable), cond(T, ok), ""},
		{"a refresh works again: quiet", cond(T, unavailable), cond(T, ok), ""},
		{"first success: quiet", nil, cond(T, ok), ""},
		{"refresh: quiet", cond(T, ok), cond(T, ok), ""},
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

// An operator reads why a binding fails in the log: a failure someone must act on is an error line with the cause
// when it starts, a transient one (Azure's to clear) an info line with the cause, a further failed pass a debug line,
// recovery an info line; a steady Ready binding logs nothing.
func TestLogReadiness(t *testing.T) {
	var buf bytes.Buffer
	log := funcr.New(func(prefix, args string) { buf.WriteString(prefix + " " + args + "\n") }, funcr.Options{Verbosity: 1})
	cause := &azauth.Error{Kind: azauth.Unavailable, Endpoint: azauth.EndpointEntra, Detail: "no response: proxy 127.0.0.1:3128 refused the connection"}
	pass := func(was *metav1.Condition, failing error) *scope {
		s := unitScope(was)
		s.targetSA, s.secret, s.heldExpiry = &corev1.ServiceAccount{}, secretValidFor(time.Hour), unitNow.Add(time.Hour)
		if failing != nil {
			reason, message := failureOf(failing)
			s.failBecause(reason, message, failing)
		}
		summarizeStatus(s, nil)
		buf.Reset()
		logReadiness(log, s)
		return s
	}

	failing := pass(nil, cause)
	if line := buf.String(); !strings.Contains(line, `"error"="entra: no response: proxy 127.0.0.1:3128 refused the connection"`) ||
		!strings.Contains(line, `"level"=0`) || !strings.Contains(line, `stays ready until the token expires`) || !strings.Contains(line, `"reason"="AzureUnavailable"`) {
		t.Fatalf("a refresh failing for a transient reason logged %q", line)
	}

	again := pass(&failing.status.Conditions[0], cause)
	if line := buf.String(); !strings.Contains(line, `"level"=1`) || !strings.Contains(line, "Binding still failing") {
		t.Fatalf("a further failed pass logged %q", line)
	}

	recovered := pass(&again.status.Conditions[0], nil)
	if line := buf.String(); !strings.Contains(line, `"level"=0`) || !strings.Contains(line, "Binding recovered") {
		t.Fatalf("recovery logged %q", line)
	}

	pass(&recovered.status.Conditions[0], nil)
	if buf.Len() != 0 {
		t.Fatalf("a steady Ready binding logged %q", buf.String())
	}

	denied := &azauth.Error{Kind: azauth.RegistryDenied, Endpoint: azauth.EndpointACRExchange, Detail: "the registry refused the identity"}
	pass(&recovered.status.Conditions[0], denied)
	if line := buf.String(); strings.Contains(line, `"level"`) || !strings.Contains(line, `"msg"="Binding is not ready"`) ||
		!strings.Contains(line, `"error"="`) || !strings.Contains(line, `"reason"="RegistryDenied"`) {
		t.Fatalf("a refusal logged %q, want an error line", line)
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
