/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// The delete story: a binding going away takes its secrets with it, and only its own.

package acrpullbinding

import (
	"context"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// reconcileDelete unreferences, then deletes, the binding's secrets, then lets the binding go.
func (r *reconciler) reconcileDelete(ctx context.Context, b binding) error {
	obj := b.object()
	if !containsFinalizer(obj) {
		return nil
	}
	owned, err := r.ownedSecrets(ctx, obj)
	if err != nil {
		return err
	}
	if unlabelled, err := r.unlabelledOwnSecret(ctx, b, owned); err != nil {
		return err
	} else if unlabelled != nil {
		owned = append(owned, *unlabelled)
	}
	// Only names of secrets the binding is seen to own (their owner reference carries its UID): a secret of the
	// binding's name that is someone else's (a hand-made one, or the other API version's binding's, reported as
	// SecretConflict) stays referenced wherever it is, and so does a name whose secret is gone, which may be anyone's.
	names := make([]string, 0, len(owned)+1)
	for _, sec := range owned {
		names = append(names, sec.Name)
	}
	// The cache may not show yet a secret a pass wrote moments ago, nor its reference (a binding deleted right after
	// it was created, or a controller killed mid-pass): the binding's own name is decided from the apiserver. Ours, or
	// gone (a reference left dangling is ours to remove): unreference it; someone else's: leave it where it is.
	if name := b.secretName(); !slices.Contains(names, name) {
		sec := secretMetadata()
		err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: name}, sec)
		switch {
		case apierrors.IsNotFound(err):
			names = append(names, name)
		case err != nil:
			return err
		case ownedBy(sec, obj):
			names, owned = append(names, name), append(owned, *sec)
		}
	}
	// The cache may not show yet a reference written moments ago (a binding deleted right after it was created):
	// unreference from what the apiserver holds, since nothing will come back for this binding afterwards.
	if err := r.detachEverywhereFresh(ctx, obj.GetNamespace(), names); err != nil {
		return err
	}
	if err := r.deleteSecrets(ctx, names, owned); err != nil {
		return err
	}
	r.Metrics.ForgetBinding(r.api.name(), obj.GetNamespace(), obj.GetName())
	return r.removeFinalizer(ctx, obj)
}

// cleanUpVanished undoes the work of a binding that went away without passing through reconcileDelete, which the
// finalizer does not rule out: a DELETE that read the binding just before the finalizer was added removes it anyway
// (the apiserver retries its conditional delete on the newer revision without looking at finalizers again), while
// the finalizer patch succeeds and the pass goes on to create and attach the secret. The deletion event queues the
// binding once more, and that reconcile starts only after any pass in flight for it ends, so reading from the
// apiserver here sees everything such a pass wrote.
func (r *reconciler) cleanUpVanished(ctx context.Context, key types.NamespacedName) error {
	name := r.secretNameOf(key.Name)
	sec := secretMetadata()
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: name}, sec); err != nil {
		if !apierrors.IsNotFound(err) {
			return err
		}
		// The usual case: reconcileDelete already removed it. Or the garbage collector did, the binding having gone
		// without its finalizer (seen going by this process), and the name may still be referenced.
		if r.goneWithoutFinalizer.seen(key, r.Clock.Now()) {
			return r.unreferenceDangling(ctx, key, name)
		}
		return nil
	}
	owner, err := r.bindingOwner(sec)
	if err != nil || owner == nil {
		return err
	}
	// The owner's name, not the key's: a name cut and hashed for length maps back to no binding
	// (enqueueOrphanedNames queues what it can read off the secret name).
	ownerKey := types.NamespacedName{Namespace: key.Namespace, Name: owner.Name}
	live := r.api.newObject()
	err = r.APIReader.Get(ctx, ownerKey, live)
	if err == nil && live.GetUID() == owner.UID {
		// The owner lives: the cache is behind, or the binding belongs to another shard.
		return nil
	}
	if client.IgnoreNotFound(err) != nil {
		return err
	}
	ctrl.LoggerFrom(ctx).Info("binding deleted without its finalizer: unreferencing and deleting its secret", "secret", name)
	if err := r.detachEverywhereFresh(ctx, key.Namespace, []string{name}); err != nil {
		return err
	}
	r.Metrics.ForgetBinding(r.api.name(), key.Namespace, owner.Name)
	if err := r.deleteSecrets(ctx, []string{name}, []metav1.PartialObjectMetadata{*sec}); err != nil {
		return err
	}
	r.goneWithoutFinalizer.forget(key)
	return nil
}

// unreferenceDangling removes name, whose secret is gone, from the namespace's service accounts when no binding of
// the key's name exists: what a binding seen deleted without its finalizer (a new one, before its follow-up pass)
// leaves when the garbage collector deletes its secret (owned by the binding) first. reconcileDelete unreferences
// such a name too; a name nobody is seen to have owned stays, as it may be anyone's. The cache says whether any
// account lists the name at all.
func (r *reconciler) unreferenceDangling(ctx context.Context, key types.NamespacedName, name string) error {
	accounts := &corev1.ServiceAccountList{}
	if err := r.Client.List(ctx, accounts, client.InNamespace(key.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	if !slices.ContainsFunc(accounts.Items, func(sa corev1.ServiceAccount) bool { return listsPullSecret(&sa, name) }) {
		return nil
	}
	// A binding of this name (another shard's, or one created again) attaches its own secret.
	if err := r.APIReader.Get(ctx, key, r.api.newObject()); !apierrors.IsNotFound(err) {
		return err
	}
	ctrl.LoggerFrom(ctx).Info("binding deleted without its finalizer: unreferencing its secret, already deleted", "secret", name)
	if err := r.detachEverywhereFresh(ctx, key.Namespace, []string{name}); err != nil {
		return err
	}
	r.goneWithoutFinalizer.forget(key)
	return nil
}

// secretNameOf is the secret name of a binding of this API version named bindingName.
func (r *reconciler) secretNameOf(bindingName string) string {
	probe := r.api.newObject()
	probe.SetName(bindingName)
	return r.api.wrap(probe).secretName()
}

// bindingOwner is the owner reference naming a binding of this API group whose secret the secret is, or nil: a
// secret of the same name may belong to someone else, who keeps it.
func (r *reconciler) bindingOwner(sec *metav1.PartialObjectMetadata) (*metav1.OwnerReference, error) {
	gvk, err := apiutil.GVKForObject(r.api.newObject(), r.Client.Scheme())
	if err != nil {
		return nil, err
	}
	for i, ref := range sec.GetOwnerReferences() {
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err == nil && gv.Group == gvk.Group && ref.Kind == gvk.Kind && r.secretNameOf(ref.Name) == sec.Name {
			return &sec.GetOwnerReferences()[i], nil
		}
	}
	return nil, nil
}

func (r *reconciler) removeFinalizer(ctx context.Context, obj client.Object) error {
	base := obj.DeepCopyObject().(client.Object)
	controllerutil.RemoveFinalizer(obj, Finalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{})))
}

// deletionMemory is how long a binding seen deleted without its finalizer is remembered. What it is remembered for
// happens within seconds of the deletion: the reconcile its deletion event queues, and the one a service account's
// update queues when the cache shows a reference written just before (enqueueOrphanedNames). A restarted process
// remembers nothing either, and finds such names through enqueueOrphanedNames alone.
const deletionMemory = 10 * time.Minute

// recentDeletions remembers bindings seen deleted without their finalizer, each for deletionMemory. Without the
// bound, every binding deleted before its first usable pass (one that never got a secret) would stay remembered for
// the life of the process. It is safe for concurrent use.
type recentDeletions struct {
	mu     sync.Mutex
	at     map[types.NamespacedName]time.Time
	pruned time.Time
}

// note remembers key as deleted at now, and forgets what is older than deletionMemory, at most once a minute so that
// a mass deletion does not scan the map per binding.
func (d *recentDeletions) note(key types.NamespacedName, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.at == nil {
		d.at = map[types.NamespacedName]time.Time{}
	}
	d.at[key] = now
	if now.Sub(d.pruned) < time.Minute {
		return
	}
	d.pruned = now
	for k, t := range d.at {
		if now.Sub(t) > deletionMemory {
			delete(d.at, k)
		}
	}
}

// seen says whether key was deleted without its finalizer within deletionMemory of now.
func (d *recentDeletions) seen(key types.NamespacedName, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.at[key]
	return ok && now.Sub(t) <= deletionMemory
}

// forget drops key once its leftovers are dealt with.
func (d *recentDeletions) forget(key types.NamespacedName) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.at, key)
}

// len is how many deletions are remembered.
func (d *recentDeletions) len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.at)
}
