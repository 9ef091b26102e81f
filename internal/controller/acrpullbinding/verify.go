/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// The verification story: a binding that proves its credential pulls. After a new credential is written (never
// before, so the secret is never late for it), the registry is asked once, with that credential, for one tag of the
// scope's repository; every binding whose secret holds that credential reports the answer as its Verified condition.

package acrpullbinding

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
)

// PullChecker asks a registry whether an access token can read a repository; azauth.Client is the real one.
type PullChecker interface {
	CheckPull(ctx context.Context, server, repository string, accessToken azauth.Token) azauth.PullCheck
}

// pullVerifier remembers, per credential, what the registry said about it. Both API versions' reconcilers share it,
// as they share credentials: bindings whose secrets hold the same credential cost one registry request between them.
type pullVerifier struct {
	checker PullChecker
	metrics MetricsSink
	clock   clock.Clock

	mu sync.Mutex
	// byCredential is keyed by credentialKey; an entry lives until its credential expires.
	byCredential map[string]*pullVerification
}

// pullVerification is one credential's check: verdict is set before done is closed.
type pullVerification struct {
	done    chan struct{}
	verdict verdict
	expires time.Time
	started time.Time
	// waiters are woken when the verdict is in: passes that stopped waiting for it. Guarded by the verifier's mu.
	waiters []func()
}

// pullCheckPatience is how long after a check started a pass still waits for its verdict, so that a registry
// answering as usual (within milliseconds) has its verdict in the same status write as the new secret. A pass that
// comes later, or a registry slower than that, does not hold a worker: the verdict wakes the binding once it is in.
const pullCheckPatience = 2 * time.Second

// verdict is what the Verified condition says.
type verdict struct {
	status  metav1.ConditionStatus
	reason  string
	message string
}

func newPullVerifier(checker PullChecker, metrics MetricsSink, clk clock.Clock) *pullVerifier {
	return &pullVerifier{checker: checker, metrics: metrics, clock: clk, byCredential: map[string]*pullVerification{}}
}

// credentialKey names the credential a secret holds by what its annotations record: the inputs it was minted from
// and its issue and expiry times. Bindings that received the same credential (shared through the token cache or
// shareCredential) have the same key, and a refresh makes a new one. A credential minted from the same inputs at the
// same second for another namespace's federated account gets the same key too, and rightly the same answer: same
// identity, registry and scope.
func credentialKey(annotations map[string]string) (string, bool) {
	inputs, issued, expires := annotations[InputsAnnotation], annotations[RefreshAnnotation], annotations[ExpiryAnnotation]
	if inputs == "" || issued == "" || expires == "" {
		return "", false
	}
	return inputs + "|" + issued + "|" + expires, true
}

// start checks a new credential unless it is being or was checked: in the background, so nothing the pass does
// next (attaching the secret) waits for the registry. A scope the registry cannot be asked about gets its verdict
// without a request.
func (v *pullVerifier) start(ctx context.Context, key string, expires time.Time, server, scope string, token azauth.Token) {
	v.mu.Lock()
	if _, ok := v.byCredential[key]; ok {
		v.mu.Unlock()
		return
	}
	v.forgetExpired()
	pv := &pullVerification{done: make(chan struct{}), expires: expires, started: v.clock.Now()}
	v.byCredential[key] = pv
	v.mu.Unlock()

	repository, entries := pullRepository(scope)
	switch {
	case scope == "":
		v.finish(pv, verdict{metav1.ConditionUnknown, acrv1beta2.ReasonRegistryWideScope,
			"a registry-wide credential names no repository to check; the registry accepted the identity when it issued it"})
		return
	case repository == "":
		v.finish(pv, verdict{metav1.ConditionFalse, acrv1beta2.ReasonScopeDenied,
			fmt.Sprintf("scope %q asks for no pull action on any repository: the secret cannot pull", scope)})
		return
	}
	// The check outlives the pass that started it: a pass ending early leaves the answer to the next one.
	ctx = context.WithoutCancel(ctx)
	go func() {
		check := v.checker.CheckPull(ctx, server, repository, token)
		v.metrics.PullCheck(string(check.Outcome))
		v.finish(pv, verdictOf(check, server, repository, entries))
	}()
}

// finish records a check's verdict and wakes the passes that stopped waiting for it.
func (v *pullVerifier) finish(pv *pullVerification, verdict verdict) {
	v.mu.Lock()
	pv.verdict = verdict
	close(pv.done)
	waiters := pv.waiters
	pv.waiters = nil
	v.mu.Unlock()
	for _, wake := range waiters {
		wake()
	}
}

// result is the verdict on the credential key names. A check under way is waited for until pullCheckPatience after
// it started; past that, wake is called once the verdict is in, and result reports false, as it does when this
// controller has not checked that credential (it was written before the controller started) or ctx ends first.
func (v *pullVerifier) result(ctx context.Context, key string, wake func()) (verdict, bool) {
	v.mu.Lock()
	pv := v.byCredential[key]
	v.mu.Unlock()
	if pv == nil {
		return verdict{}, false
	}
	if left := pullCheckPatience - v.clock.Since(pv.started); left > 0 {
		patience := v.clock.NewTimer(left)
		defer patience.Stop()
		select {
		case <-pv.done:
			return pv.verdict, true
		case <-ctx.Done():
		case <-patience.C():
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	select {
	case <-pv.done:
		return pv.verdict, true
	default:
		pv.waiters = append(pv.waiters, wake)
		return verdict{}, false
	}
}

// forgetExpired drops the checks of expired credentials; the caller holds mu.
func (v *pullVerifier) forgetExpired() {
	now := v.clock.Now()
	for key, pv := range v.byCredential {
		if !now.Before(pv.expires) {
			delete(v.byCredential, key)
		}
	}
}

// pullRepository is the first repository the scope may pull, and how many repository entries the scope has. One
// request per credential is the budget, so a scope naming several repositories is checked on its first.
func pullRepository(scope string) (repository string, entries int) {
	for _, entry := range strings.Fields(scope) {
		parts := strings.Split(entry, ":")
		if len(parts) != 3 || parts[0] != "repository" {
			continue
		}
		entries++
		if repository == "" && slices.Contains(strings.Split(parts[2], ","), "pull") {
			repository = parts[1]
		}
	}
	return repository, entries
}

// verdictOf turns the registry's answer into the condition.
func verdictOf(check azauth.PullCheck, server, repository string, entries int) verdict {
	v := verdict{status: metav1.ConditionFalse, reason: string(check.Outcome)}
	if check.Outcome == azauth.PullVerified {
		v.status = metav1.ConditionTrue
	}
	v.message = fmt.Sprintf("repository %q on %s: %s", repository, server, check.Detail)
	switch check.Outcome {
	case azauth.RepositoryNotFound:
		v.message += "; check the scope's repository name, or push an image to it"
	case azauth.ScopeDenied:
		v.message += "; give the identity AcrPull on the registry (or the repository)"
	case azauth.RegistryUnreachable:
		v.message += "; checked again at the next refresh"
	}
	if entries > 1 {
		v.message += fmt.Sprintf(" (the first of the scope's %d repositories that asks for pull is checked)", entries)
	}
	return v
}

// startPullCheck starts checking the credential reconcileSecret just wrote to s.secret.
func (r *reconciler) startPullCheck(ctx context.Context, s *scope, token azauth.Token) {
	if r.verifier == nil || s.secret == nil {
		return
	}
	if key, ok := credentialKey(s.secret.Annotations); ok {
		r.verifier.start(ctx, key, token.ExpiresAt, s.desired.server, s.desired.scope, token)
	}
}

// verifyPull sets the Verified condition from the check of the credential in the binding's secret: the one this pass
// started, or another binding's pass for the same credential, waited for briefly if still under way (a slow registry
// wakes the binding once it answers). A credential this controller did not check (written before it started) leaves
// the condition as the status has it, until the next refresh checks the new one.
func (r *reconciler) verifyPull(ctx context.Context, s *scope) (ctrl.Result, error) {
	if r.verifier == nil || s.secret == nil {
		return ctrl.Result{}, nil
	}
	key, ok := credentialKey(s.secret.Annotations)
	if !ok {
		return ctrl.Result{}, nil
	}
	obj := s.binding.object()
	v, ok := r.verifier.result(ctx, key, func() { r.wakeUp(obj) })
	if !ok {
		return ctrl.Result{}, nil
	}
	meta.SetStatusCondition(&s.status.Conditions, metav1.Condition{Type: acrv1beta2.ConditionVerified, Status: v.status,
		Reason: v.reason, Message: v.message, ObservedGeneration: s.binding.object().GetGeneration()})
	return ctrl.Result{}, nil
}

// verifiedTransition says whether a pass should emit a Warning Event for the Verified condition: when it turns False
// for a reason the binding's author must fix (the repository, the identity's rights), or for a new such reason.
// RegistryUnreachable says nothing about the binding, and every binding of an unreachable registry would emit it at
// once; the condition and the metrics show it. Steady states emit nothing.
func verifiedTransition(before, after []metav1.Condition) (reason, message string, emit bool) {
	now := meta.FindStatusCondition(after, acrv1beta2.ConditionVerified)
	if now == nil || now.Status != metav1.ConditionFalse ||
		(now.Reason != acrv1beta2.ReasonRepositoryNotFound && now.Reason != acrv1beta2.ReasonScopeDenied) {
		return "", "", false
	}
	was := meta.FindStatusCondition(before, acrv1beta2.ConditionVerified)
	if was != nil && was.Status == metav1.ConditionFalse && was.Reason == now.Reason {
		return "", "", false
	}
	return now.Reason, now.Message, true
}

// reportVerification tells metrics and the Event stream what the Verified condition says after a pass, and removes
// it when verification is off.
func (r *reconciler) reportVerification(s *scope) {
	obj := s.binding.object()
	if r.verifier == nil {
		meta.RemoveStatusCondition(&s.status.Conditions, acrv1beta2.ConditionVerified)
	}
	c := meta.FindStatusCondition(s.status.Conditions, acrv1beta2.ConditionVerified)
	if c == nil {
		r.Metrics.BindingVerification(r.api.name(), obj.GetNamespace(), obj.GetName(), "", "")
		return
	}
	r.Metrics.BindingVerification(r.api.name(), obj.GetNamespace(), obj.GetName(), string(c.Status), c.Reason)
	if reason, message, emit := verifiedTransition(s.original.Conditions, s.status.Conditions); emit {
		r.Recorder.Eventf(obj, nil, corev1.EventTypeWarning, reason, "VerifyPull", "%s", message)
	}
}
