/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// The outage story, part two: bindings that share a credential wait on it together. While Azure fails it, one of
// them (the prober) retries at the token cache's pace, a few seconds apart, and the others wait quietly; the first
// success on the credential, the prober's or any other binding's, wakes all of them at once. An outage then costs
// one Azure request per credential per probe, no pass per binding per retry, and every binding resumes within
// seconds of the outage's end instead of each waiting out its own backoff.

package acrpullbinding

import (
	"context"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

// quietWait is how long a binding waiting on a credential waits on its own, unless a still-valid token bounds it
// sooner (mintFailed): the credential's first success wakes it long before.
const quietWait = 5 * time.Minute

// minProbeWait is the prober's shortest wait, for a failure that names none: the token cache then says how long
// the credential is blocked, and the prober's next pass waits exactly that.
const minProbeWait = time.Second

// wakeTimeout bounds how long waking a credential's waiters may wait for the controller's queue to take them; a
// binding not woken by then is served by its own requeue.
const wakeTimeout = time.Minute

// waitingRoom holds the bindings waiting on each credential (mint.Request.Key) after a transient failure. It is safe
// for concurrent use.
type waitingRoom struct {
	mu sync.Mutex
	// waiting is every waiting binding's credential; byCredential the waiters of each credential.
	waiting      map[types.NamespacedName]string
	byCredential map[string]*waiters
}

type waiters struct {
	bindings map[types.NamespacedName]struct{}
	// prober is the waiter that retries at the cache's pace.
	prober types.NamespacedName
}

func newWaitingRoom() *waitingRoom {
	return &waitingRoom{waiting: map[types.NamespacedName]string{}, byCredential: map[string]*waiters{}}
}

// wait records that binding waits on credential, and says whether it is the credential's prober: the first to wait,
// or the next after a prober left.
func (w *waitingRoom) wait(credential string, binding types.NamespacedName) (prober bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if was, ok := w.waiting[binding]; ok && was != credential {
		w.remove(binding)
	}
	ws := w.byCredential[credential]
	if ws == nil {
		ws = &waiters{bindings: map[types.NamespacedName]struct{}{}}
		w.byCredential[credential] = ws
	}
	ws.bindings[binding] = struct{}{}
	w.waiting[binding] = credential
	if ws.prober == (types.NamespacedName{}) {
		ws.prober = binding
	}
	return ws.prober == binding
}

// succeeded releases every binding waiting on credential, which works again, and returns those other than binding.
func (w *waitingRoom) succeeded(credential string, binding types.NamespacedName) []types.NamespacedName {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.remove(binding)
	ws := w.byCredential[credential]
	if ws == nil {
		return nil
	}
	delete(w.byCredential, credential)
	woken := make([]types.NamespacedName, 0, len(ws.bindings))
	for b := range ws.bindings {
		delete(w.waiting, b)
		woken = append(woken, b)
	}
	return woken
}

// leave records that binding waits no more (it is gone, or no longer needs a new credential). When it was its
// credential's prober, the next prober is returned, to be woken so that probing goes on.
func (w *waitingRoom) leave(binding types.NamespacedName) (next types.NamespacedName, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.remove(binding)
}

// remove takes binding out of the room; w.mu is held.
func (w *waitingRoom) remove(binding types.NamespacedName) (next types.NamespacedName, ok bool) {
	credential, waiting := w.waiting[binding]
	if !waiting {
		return types.NamespacedName{}, false
	}
	delete(w.waiting, binding)
	ws := w.byCredential[credential]
	delete(ws.bindings, binding)
	if len(ws.bindings) == 0 {
		delete(w.byCredential, credential)
		return types.NamespacedName{}, false
	}
	if ws.prober != binding {
		return types.NamespacedName{}, false
	}
	ws.prober = types.NamespacedName{}
	for b := range ws.bindings {
		ws.prober = b
		break
	}
	return ws.prober, true
}

// waitOnCredential decides when a binding whose mint failed for a transient reason tries again: the credential's
// prober as soon as the cache will fetch again (retryAfter, Azure's or the cache's block), the others only on their
// own safety net (quietWait, which mintFailed bounds by a still-valid token's life) since the credential's first
// success wakes them. Other failures, and a pass that named no credential, keep wait.
func (r *reconciler) waitOnCredential(s *scope, reason string, retryAfter, wait time.Duration) time.Duration {
	if r.waiting == nil || s.credential == "" || !transient(reason) {
		return wait
	}
	s.waiting = true
	if r.waiting.wait(s.credential, s.key()) {
		return max(retryAfter, minProbeWait)
	}
	return max(retryAfter, quietWait)
}

// credentialWorks wakes the bindings that were waiting on the credential a pass just minted.
func (r *reconciler) credentialWorks(ctx context.Context, s *scope) {
	if r.waiting == nil || s.credential == "" {
		return
	}
	woken := r.waiting.succeeded(s.credential, s.key())
	if len(woken) == 0 {
		return
	}
	ctrl.LoggerFrom(ctx).Info("Credential works again; waking the bindings waiting on it", "waiting", len(woken))
	r.wakeAll(woken)
}

// stopWaiting takes a binding out of the waiting room at the end of a pass that did not wait, handing probing on
// when it was the prober.
func (r *reconciler) stopWaiting(binding types.NamespacedName) {
	if r.waiting == nil {
		return
	}
	if next, ok := r.waiting.leave(binding); ok {
		r.wakeAll([]types.NamespacedName{next})
	}
}

// wakeAll queues the bindings' reconciles through the controller's channel, without holding the pass that found
// them: there may be thousands, more than the channel buffers.
func (r *reconciler) wakeAll(bindings []types.NamespacedName) {
	go func() {
		timeout := r.Clock.NewTimer(wakeTimeout)
		defer timeout.Stop()
		for _, b := range bindings {
			obj := r.api.newObject()
			obj.SetNamespace(b.Namespace)
			obj.SetName(b.Name)
			select {
			case r.served <- event.GenericEvent{Object: obj}:
			case <-timeout.C():
				return
			}
		}
	}()
}

// key is the binding's namespace and name.
func (s *scope) key() types.NamespacedName {
	o := s.binding.object()
	return types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}
}
