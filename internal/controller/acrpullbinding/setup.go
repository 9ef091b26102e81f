/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"context"
	"errors"
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"
)

// Deps are what both reconcilers share.
type Deps struct {
	Minter Minter
	// PullChecker checks new credentials against the registry; needed when Config.VerifyPull is on.
	PullChecker PullChecker
	Metrics     MetricsSink
	Config      Config
	Clock       clock.Clock
	Workers     int
	Recorder    func(name string) events.EventRecorder
}

// SetupWithManager registers the field indexes and the reconcilers of every API version with mgr.
func SetupWithManager(mgr ctrl.Manager, d Deps) error {
	if d.Minter == nil || d.Metrics == nil || d.Recorder == nil {
		return errors.New("acrpullbinding: Deps needs a Minter, Metrics and a Recorder")
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	d.Workers = max(d.Workers, 1)
	var verifier *pullVerifier
	if d.Config.VerifyPull {
		if d.PullChecker == nil {
			return errors.New("acrpullbinding: Config.VerifyPull needs a PullChecker")
		}
		// One for both API versions, which share credentials.
		verifier = newPullVerifier(d.PullChecker, d.Metrics, d.Clock)
	}
	credentials, err := credentialSecretsCache(mgr)
	if err != nil {
		return err
	}
	for _, api := range []apiVersion{v1beta2API{}, v1beta1API{}} {
		r := &reconciler{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Minter: d.Minter, Metrics: d.Metrics,
			Clock: d.Clock, Config: d.Config, Recorder: d.Recorder(api.name()), api: api, verifier: verifier,
			credentials: credentials,
			waiting:     newWaitingRoom(),
		}
		if err := r.setup(mgr, d.Workers, credentials); err != nil {
			return err
		}
	}
	return nil
}

func (r *reconciler) setup(mgr ctrl.Manager, workers int, credentials cache.Cache) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.api.newObject(), serviceAccountIndex,
		func(o client.Object) []string { return r.api.wrap(o).serviceAccountNames() }); err != nil {
		return err
	}
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.api.newObject(), credentialSecretIndex,
		func(o client.Object) []string {
			if name := r.api.wrap(o).credentialSecretName(); name != "" {
				return []string{name}
			}
			return nil
		}); err != nil {
		return err
	}
	r.served = make(chan event.GenericEvent, 1024)
	return ctrl.NewControllerManagedBy(mgr).
		Named(r.api.name()).
		For(r.api.newObject(), builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}),
			r.noteDeletionWithoutFinalizer())).
		// Secrets are watched as metadata only: the controller never needs to read a token back.
		Owns(&corev1.Secret{}, builder.OnlyMetadata, builder.WithPredicates(secretChangedByOthers)).
		Watches(&corev1.ServiceAccount{}, r.serviceAccountEvents()).
		WatchesRawSource(source.Kind(credentials, secretMetadata(), r.credentialSecretEvents())).
		WatchesRawSource(source.Channel(r.served, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, RecoverPanic: ptrTo(true)}).
		Complete(r)
}

// noteDeletionWithoutFinalizer passes every event, and remembers a binding deleted without the finalizer (a new one
// deleted before its follow-up pass added it; see deferFinalizer), so that cleanUpVanished may unreference its
// secret's name even when the garbage collector deleted the secret first.
func (r *reconciler) noteDeletionWithoutFinalizer() predicate.Predicate {
	return predicate.Funcs{DeleteFunc: func(e event.DeleteEvent) bool {
		if e.Object != nil && !containsFinalizer(e.Object) {
			r.goneWithoutFinalizer.note(client.ObjectKeyFromObject(e.Object), r.Clock.Now())
		}
		return true
	}}
}

// secretChangedByOthers passes secret events that can need action: deletion, and updates that touch what the
// controller relies on (labels, owners, the inputs annotation). A refresh changes only the token and its times;
// reacting to it would reconcile every binding twice per refresh, against a cache that may not show the status just
// written yet, and write the same status again. Creation is the controller's own doing, in the pass that is already
// handling the binding; reacting to it cost a second pass per new binding, which could write the same status again
// from a stale cache. The start-up list is the exception: a secret whose binding vanished while the controller was
// down (killed between writing the secret and attaching it) is found by nothing else, since no binding and no
// service account names it; its owner is queued so that cleanUpVanished deletes it. For a live binding the key is the
// one its own informer queued, so this costs at most a pass that writes nothing.
var secretChangedByOthers = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return e.IsInInitialList },
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, cur := e.ObjectOld, e.ObjectNew
		return !cur.GetDeletionTimestamp().IsZero() ||
			!maps.Equal(old.GetLabels(), cur.GetLabels()) ||
			!equality.Semantic.DeepEqual(old.GetOwnerReferences(), cur.GetOwnerReferences()) ||
			old.GetAnnotations()[InputsAnnotation] != cur.GetAnnotations()[InputsAnnotation]
	},
}

// serviceAccountEvents wakes the bindings a service account event can concern. An account that appears or goes
// concerns every binding that targets it or is federated through it. An update concerns only a binding whose secret
// exists but is missing from the account's imagePullSecrets (someone dropped it): the controller's own patches,
// one per binding, would otherwise wake every binding of the account once per patch.
func (r *reconciler) serviceAccountEvents() handler.EventHandler {
	enqueue := func(ctx context.Context, sa client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request], needs func(binding) bool) {
		list := r.api.newList()
		// Read only: the cache's own objects, not copies.
		if err := r.Client.List(ctx, list, client.InNamespace(sa.GetNamespace()),
			client.MatchingFields{serviceAccountIndex: sa.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
			return
		}
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			b := r.api.wrap(o.(client.Object))
			if needs == nil || needs(b) {
				q.Add(reconcile.Request{NamespacedName: client.ObjectKeyFromObject(b.object())})
			}
			return nil
		})
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q, nil)
			r.enqueueOrphanedNames(ctx, e.Object, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q, nil)
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			enqueue(ctx, e.Object, q, nil)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			sa, ok := e.ObjectNew.(*corev1.ServiceAccount)
			if !ok {
				return
			}
			enqueue(ctx, sa, q, func(b binding) bool { return r.lostAttachment(ctx, b, sa) })
			r.enqueueOrphanedNames(ctx, sa, q)
		},
	}
}

// enqueueOrphanedNames queues the bindings that pull-secret names of this API version on sa belong to when no
// binding in the cache claims them: the reconcile of a binding that is gone undoes what it left behind
// (cleanUpVanished), keeping secrets and references that are still someone's. Such names come from a pass that
// attached a sibling's secret while the sibling was being deleted (shareCredential); the patch that attached it is
// the update that brings it here. At start-up every account arrives as created, so names left while the
// controller was down are found too.
func (r *reconciler) enqueueOrphanedNames(ctx context.Context, sa client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
	account, ok := sa.(*corev1.ServiceAccount)
	if !ok {
		return
	}
	var candidates []corev1.LocalObjectReference
	for _, ref := range account.ImagePullSecrets {
		if _, ok := r.api.bindingNameOf(ref.Name); ok {
			candidates = append(candidates, ref)
		}
	}
	if len(candidates) == 0 {
		return
	}
	list := r.api.newList()
	if err := r.Client.List(ctx, list, client.InNamespace(account.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return
	}
	claimed := map[string]bool{}
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		claimed[r.api.wrap(o.(client.Object)).secretName()] = true
		return nil
	})
	for _, ref := range candidates {
		if !claimed[ref.Name] {
			name, _ := r.api.bindingNameOf(ref.Name)
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Namespace: account.Namespace, Name: name}})
		}
	}
}

// lostAttachment says whether sa is b's target and lacks b's existing secret.
func (r *reconciler) lostAttachment(ctx context.Context, b binding, sa *corev1.ServiceAccount) bool {
	if b.targetServiceAccount() != sa.Name {
		return false
	}
	name := b.secretName()
	if listsPullSecret(sa, name) {
		return false
	}
	secret, err := r.ownSecret(ctx, b)
	return err != nil || secret != nil
}

func containsFinalizer(o client.Object) bool { return controllerutil.ContainsFinalizer(o, Finalizer) }
