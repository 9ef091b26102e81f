/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// maxConflictRetries bounds how often an edit of a busy service account is retried before the pass gives up and
// the binding is requeued.
const maxConflictRetries = 5

// detachEverywhere removes names from the imagePullSecrets of every service account in the namespace except keep.
// It scans the namespace's accounts in the cache (an index by pull-secret name would keep a set per secret, more
// memory than the scan costs time) and copies only those it edits.
func (r *reconciler) detachEverywhere(ctx context.Context, namespace string, names []string, keep string) error {
	list := &corev1.ServiceAccountList{}
	if err := r.Client.List(ctx, list, client.InNamespace(namespace), client.UnsafeDisableDeepCopy); err != nil {
		return err
	}
	for i := range list.Items {
		sa := &list.Items[i]
		if sa.Name == keep || !slices.ContainsFunc(sa.ImagePullSecrets, func(ref corev1.LocalObjectReference) bool {
			return slices.Contains(names, ref.Name)
		}) {
			continue
		}
		if err := r.editPullSecrets(ctx, sa.DeepCopy(), func(refs []corev1.LocalObjectReference) []corev1.LocalObjectReference {
			return withoutPullSecrets(refs, names)
		}); err != nil {
			return err
		}
	}
	return nil
}

// listsPullSecret says whether sa's imagePullSecrets name the secret.
func listsPullSecret(sa *corev1.ServiceAccount, name string) bool {
	return slices.ContainsFunc(sa.ImagePullSecrets, func(ref corev1.LocalObjectReference) bool { return ref.Name == name })
}

// detachEverywhereFresh is detachEverywhere reading the namespace's service accounts from the apiserver instead of
// the cache; deletion uses it because it is the binding's last chance to clean up.
func (r *reconciler) detachEverywhereFresh(ctx context.Context, namespace string, names []string) error {
	list := &corev1.ServiceAccountList{}
	if err := r.APIReader.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return err
	}
	for i := range list.Items {
		if err := r.editPullSecrets(ctx, &list.Items[i], func(refs []corev1.LocalObjectReference) []corev1.LocalObjectReference {
			return withoutPullSecrets(refs, names)
		}); err != nil {
			return err
		}
	}
	return nil
}

// editPullSecrets applies edit to a service account's imagePullSecrets with optimistic concurrency: the list has no
// merge key, so a blind patch would drop entries other writers just added. On a conflict it re-reads the account
// from the apiserver and edits again.
func (r *reconciler) editPullSecrets(ctx context.Context, sa *corev1.ServiceAccount,
	edit func([]corev1.LocalObjectReference) []corev1.LocalObjectReference) error {
	for attempt := 0; ; attempt++ {
		updated := edit(sa.ImagePullSecrets)
		if slices.Equal(updated, sa.ImagePullSecrets) {
			return nil
		}
		base := sa.DeepCopy()
		changed := sa.DeepCopy()
		changed.ImagePullSecrets = updated
		err := r.Client.Patch(ctx, changed, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) || attempt == maxConflictRetries {
			return err
		}
		fresh := &corev1.ServiceAccount{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(sa), fresh); err != nil {
			return client.IgnoreNotFound(err)
		}
		sa = fresh
	}
}

// withPullSecrets appends each of names not yet present; entries of other writers keep their order.
func withPullSecrets(refs []corev1.LocalObjectReference, names ...string) []corev1.LocalObjectReference {
	out := slices.Clone(refs)
	for _, name := range names {
		if !slices.ContainsFunc(out, func(ref corev1.LocalObjectReference) bool { return ref.Name == name }) {
			out = append(out, corev1.LocalObjectReference{Name: name})
		}
	}
	return out
}

// withoutPullSecrets drops every entry named in names, and nothing else.
func withoutPullSecrets(refs []corev1.LocalObjectReference, names []string) []corev1.LocalObjectReference {
	return slices.DeleteFunc(slices.Clone(refs), func(ref corev1.LocalObjectReference) bool {
		return slices.Contains(names, ref.Name)
	})
}
