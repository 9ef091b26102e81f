/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/event"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
)

func nn(name string) types.NamespacedName { return types.NamespacedName{Namespace: "ns", Name: name} }

// The first binding to wait on a credential probes it; the others wait quietly until its first success releases
// them all, and a waiter that leaves hands probing on.
func TestWaitingRoom(t *testing.T) {
	w := newWaitingRoom()
	if !w.wait("cred", nn("a")) {
		t.Fatal("the first waiter must probe")
	}
	if w.wait("cred", nn("b")) || w.wait("cred", nn("c")) || !w.wait("cred", nn("a")) {
		t.Fatal("one prober per credential, and it stays the prober when it fails again")
	}
	if !w.wait("other", nn("x")) {
		t.Fatal("another credential has its own prober")
	}

	// The prober leaves (its binding went away): another waiter takes over and is to be woken.
	next, ok := w.leave(nn("a"))
	if !ok || (next != nn("b") && next != nn("c")) {
		t.Fatalf("leave handed probing to %v, %v", next, ok)
	}
	if !w.wait("cred", next) {
		t.Fatal("the waiter probing was handed to probes when it fails")
	}
	// A quiet waiter leaving hands nothing on.
	quiet := nn("b")
	if next == quiet {
		quiet = nn("c")
	}
	if _, ok := w.leave(quiet); ok {
		t.Fatal("a quiet waiter leaving handed probing on")
	}

	// A binding waiting on another credential now moves.
	w.wait("cred", nn("d"))
	w.wait("cred", nn("x"))
	if _, waiting := w.byCredential["other"]; waiting {
		t.Fatal("x still waits on its old credential")
	}

	woken := w.succeeded("cred", nn("d"))
	slices.SortFunc(woken, func(a, b types.NamespacedName) int { return strings.Compare(a.Name, b.Name) })
	if want := []types.NamespacedName{next, nn("x")}; !equality.Semantic.DeepEqual(woken, want) {
		t.Fatalf("success woke %v, want %v (not the binding that succeeded)", woken, want)
	}
	if len(w.waiting) != 0 || len(w.byCredential) != 0 {
		t.Fatalf("room not empty after success: %v %v", w.waiting, w.byCredential)
	}
	if got := w.succeeded("cred", nn("d")); len(got) != 0 {
		t.Fatalf("a second success woke %v", got)
	}
}

// A transient failure that goes on keeps the message the binding shows, so retries write nothing; a new reason, or a
// refusal, says what it says.
func TestOngoingFailureMessage(t *testing.T) {
	failing := func(reason, message string) bindingStatus {
		return bindingStatus{Error: message, Conditions: []metav1.Condition{{Type: acrv1beta2.ConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: message}}}
	}
	// Ready on the token it holds, while a refresh fails: the condition's message says both, status.error the failure.
	serving := func(reason, message string) bindingStatus {
		return bindingStatus{Error: message, Conditions: []metav1.Condition{{Type: acrv1beta2.ConditionReady, Status: metav1.ConditionTrue, Reason: reason,
			Message: "secret acr-pull-b holds a token valid until 2026-12-06T05:00:00Z ...; refreshing it failed: " + message}}}
	}
	ready := bindingStatus{Conditions: []metav1.Condition{{Type: acrv1beta2.ConditionReady, Status: metav1.ConditionTrue, Reason: "TokenMinted", Message: "fine"}}}
	unavailable, throttled := string(azauth.Unavailable), string(azauth.Throttled)
	for _, tc := range []struct {
		name              string
		was               bindingStatus
		reason, msg, want string
	}{
		{"entering the failure", ready, unavailable, "imds: no response", "imds: no response"},
		{"first pass ever", bindingStatus{}, unavailable, "imds: no response", "imds: no response"},
		{"the outage goes on", failing(unavailable, "imds: no response"), unavailable, "acr-token: HTTP 503", "imds: no response"},
		{"throttled again, another wait", failing(throttled, "retry after 2s"), throttled, "retry after 7s", "retry after 2s"},
		{"a new reason", failing(unavailable, "imds: no response"), throttled, "retry after 2s", "retry after 2s"},
		{"the outage goes on while the held token serves", serving(unavailable, "imds: no response"), unavailable, "acr-token: HTTP 503", "imds: no response"},
		{"a refusal says what it says", failing(string(azauth.RegistryDenied), "old"), string(azauth.RegistryDenied), "new", "new"},
	} {
		if got := ongoingFailureMessage(tc.was, tc.reason, tc.msg); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A binding failing transiently on a shared credential: the prober retries when the cache fetches again, the others
// wait quietly, bounded by a still-valid token's life; a refusal keeps the binding's own backoff.
func TestMintFailedWaitsOnTheCredential(t *testing.T) {
	r := &reconciler{Metrics: discardMetrics{}, api: v1beta2API{}, waiting: newWaitingRoom(),
		Clock: clocktesting.NewFakeClock(unitNow), served: make(chan event.GenericEvent, 8)}
	unavailable := &azauth.Error{Kind: azauth.Unavailable, Endpoint: azauth.EndpointEntra, Detail: "no response"}
	blocked := &azauth.Error{Kind: azauth.Unavailable, Endpoint: azauth.EndpointEntra, Detail: "no response", RetryAfter: 4 * time.Second}
	denied := &azauth.Error{Kind: azauth.RegistryDenied, Endpoint: azauth.EndpointEntra, Detail: "no role"}
	pass := func(name string, secret *metav1.PartialObjectMetadata, err error) (time.Duration, *scope) {
		s := unitScope(nil)
		s.binding.object().SetName(name)
		s.secret, s.credential = secret, "cred"
		return r.mintFailed(s, err).RequeueAfter, s
	}
	for _, tc := range []struct {
		name    string
		binding string
		secret  *metav1.PartialObjectMetadata
		err     error
		want    time.Duration
		waiting bool
	}{
		{"the first to fail probes as soon as the cache fetches again", "prober", nil, unavailable, minProbeWait, true},
		{"the prober again: when the cache's block ends", "prober", nil, blocked, 4 * time.Second, true},
		{"another waits quietly", "quiet", nil, blocked, quietWait, true},
		{"a still-valid token bounds the quiet wait", "valid", secretValidFor(8 * time.Minute), blocked, 2 * time.Minute, true},
		{"a refusal is not waited on", "denied", nil, denied, 2 * time.Second, false},
	} {
		got, s := pass(tc.binding, tc.secret, tc.err)
		if got != tc.want || s.waiting != tc.waiting {
			t.Errorf("%s: retry in %s (waiting %v), want %s (%v)", tc.name, got, s.waiting, tc.want, tc.waiting)
		}
	}

	// The credential works again: every waiter is queued, not the binding whose pass found out.
	s := unitScope(nil)
	s.binding.object().SetName("prober")
	s.credential = "cred"
	r.credentialWorks(t.Context(), s)
	var woken []string
	for range 2 {
		woken = append(woken, (<-r.served).Object.GetName())
	}
	slices.Sort(woken)
	if !slices.Equal(woken, []string{"quiet", "valid"}) {
		t.Fatalf("woke %v, want quiet and valid", woken)
	}
}
