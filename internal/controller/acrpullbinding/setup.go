/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"context"

	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Deps are what both reconcilers share.
type Deps struct {
	Minter   Minter
	Metrics  MetricsSink
	Config   Config
	Clock    clock.Clock
	Workers  int
	Recorder func(name string) events.EventRecorder
}

// SetupWithManager registers the field indexes and the reconcilers of every API version with mgr.
func SetupWithManager(mgr ctrl.Manager, d Deps) error {
	if err := setupIndexes(mgr); err != nil {
		return err
	}
	for _, api := range []apiVersion{v1beta2API{}, v1beta1API{}} {
		r := &Reconciler{
			Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Minter: d.Minter, Metrics: d.Metrics,
			Clock: d.Clock, Config: d.Config, Recorder: d.Recorder(api.name()), api: api,
		}
		if err := r.setup(mgr, d.Workers); err != nil {
			return err
		}
	}
	return nil
}

func (r *Reconciler) setup(mgr ctrl.Manager, workers int) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), r.api.newObject(), serviceAccountIndex,
		func(o client.Object) []string { return r.api.wrap(o).serviceAccountNames() }); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named(r.api.name()).
		For(r.api.newObject(), builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.LabelChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		// Secrets are watched as metadata only: the controller never needs to read a token back.
		Owns(&corev1.Secret{}, builder.OnlyMetadata, builder.WithPredicates(secretChangedByOthers)).
		Watches(&corev1.ServiceAccount{}, handler.EnqueueRequestsFromMapFunc(r.bindingsForServiceAccount)).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers, RecoverPanic: ptrTo(true)}).
		Complete(r)
}

// secretChangedByOthers passes secret events that can need action: creation, deletion, and updates that touch what
// the controller relies on (labels, owners, the inputs annotation). A refresh changes only the token and its times;
// reacting to it would reconcile every binding twice per refresh, against a cache that may not show the status just
// written yet, and write the same status again.
var secretChangedByOthers = predicate.Funcs{
	UpdateFunc: func(e event.UpdateEvent) bool {
		old, cur := e.ObjectOld, e.ObjectNew
		return !cur.GetDeletionTimestamp().IsZero() ||
			!maps.Equal(old.GetLabels(), cur.GetLabels()) ||
			!equality.Semantic.DeepEqual(old.GetOwnerReferences(), cur.GetOwnerReferences()) ||
			old.GetAnnotations()[InputsAnnotation] != cur.GetAnnotations()[InputsAnnotation]
	},
}

// bindingsForServiceAccount maps a service account to the bindings that target it or are federated through it.
func (r *Reconciler) bindingsForServiceAccount(ctx context.Context, sa client.Object) []reconcile.Request {
	list := r.api.newList()
	if err := r.Client.List(ctx, list, client.InNamespace(sa.GetNamespace()),
		client.MatchingFields{serviceAccountIndex: sa.GetName()}); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		m := o.(metav1.Object)
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: m.GetNamespace(), Name: m.GetName()}})
		return nil
	})
	return reqs
}

func setupIndexes(mgr ctrl.Manager) error {
	indexer := mgr.GetFieldIndexer()
	if err := indexer.IndexField(context.Background(), secretMetadata(), ownerUIDIndex, func(o client.Object) []string {
		var uids []string
		for _, ref := range o.GetOwnerReferences() {
			if ref.Kind == "AcrPullBinding" {
				uids = append(uids, string(ref.UID))
			}
		}
		return uids
	}); err != nil {
		return err
	}
	return indexer.IndexField(context.Background(), &corev1.ServiceAccount{}, pullSecretIndex, func(o client.Object) []string {
		sa := o.(*corev1.ServiceAccount)
		names := make([]string, 0, len(sa.ImagePullSecrets))
		for _, ref := range sa.ImagePullSecrets {
			names = append(names, ref.Name)
		}
		return names
	})
}

func containsFinalizer(o client.Object) bool { return controllerutil.ContainsFinalizer(o, Finalizer) }

func (r *Reconciler) removeFinalizer(ctx context.Context, obj client.Object) error {
	base := obj.DeepCopyObject().(client.Object)
	controllerutil.RemoveFinalizer(obj, Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})))
}
