/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/acrpull/acrpull/internal/controller/acrpullbinding/secretnames"
	"github.com/acrpull/acrpull/internal/dockerconfig"
	"github.com/acrpull/acrpull/internal/mint"
)

// Field indexes the controller lists by.
const (
	// serviceAccountIndex indexes bindings by the service accounts they depend on.
	serviceAccountIndex = ".spec.serviceAccountNames"
)

var secretGVK = corev1.SchemeGroupVersion.WithKind("Secret")

func secretMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(secretGVK)
	return m
}

// secretConflictError: the binding's secret name is taken by a secret the binding does not own.
type secretConflictError struct{ namespace, name string }

func (e *secretConflictError) Error() string {
	return fmt.Sprintf("secret %s/%s exists and is not owned by this binding; rename or delete it", e.namespace, e.name)
}

func ownedBy(m metav1.Object, owner metav1.Object) bool {
	return slices.ContainsFunc(m.GetOwnerReferences(), func(ref metav1.OwnerReference) bool { return ref.UID == owner.GetUID() })
}

// ownSecret returns the binding's secret (metadata only, from the cache), or nil if there is none.
func (r *reconciler) ownSecret(ctx context.Context, b binding) (*metav1.PartialObjectMetadata, error) {
	obj := b.object()
	m := secretMetadata()
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: b.secretName()}, m)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if !ownedBy(m, obj) {
		return nil, &secretConflictError{namespace: obj.GetNamespace(), name: b.secretName()}
	}
	return m, nil
}

// unlabelledOwnSecret finds the binding's secret when the cache cannot: msi-acrpull wrote secrets without the label
// the cache selects on. It returns nil when the secret is already among owned, absent, or not the binding's.
func (r *reconciler) unlabelledOwnSecret(ctx context.Context, b binding, owned []metav1.PartialObjectMetadata) (*metav1.PartialObjectMetadata, error) {
	obj := b.object()
	if slices.ContainsFunc(owned, func(m metav1.PartialObjectMetadata) bool { return m.Name == b.secretName() }) {
		return nil, nil
	}
	m := secretMetadata()
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: obj.GetNamespace(), Name: b.secretName()}, m)
	if apierrors.IsNotFound(err) || (err == nil && !ownedBy(m, obj)) {
		return nil, nil
	}
	return m, err
}

// ownedSecrets lists every secret the binding owns, whatever its name.
func (r *reconciler) ownedSecrets(ctx context.Context, owner client.Object) ([]metav1.PartialObjectMetadata, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("SecretList"))
	// A scan of the namespace's managed secrets (the cache holds no others) rather than an index by owner: such an
	// index keeps a set per secret, which cost more memory than the scan costs time. The scan reads the cache's
	// own objects; only the matches are copied.
	if err := r.Client.List(ctx, list, client.InNamespace(owner.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		return nil, err
	}
	var owned []metav1.PartialObjectMetadata
	for i := range list.Items {
		if ownedBy(&list.Items[i], owner) {
			owned = append(owned, *list.Items[i].DeepCopy())
		}
	}
	return owned, nil
}

// secretFor is b's pull secret holding a credential for server, owned by b and labelled for the controller's cache.
func (r *reconciler) secretFor(b binding, server string, cred mint.Credential, inputs string) (*corev1.Secret, error) {
	obj := b.object()
	payload, err := dockerconfig.Render(server, cred.Token.Value)
	if err != nil {
		return nil, err
	}
	gvk, err := apiutil.GVKForObject(obj, r.Client.Scheme())
	if err != nil {
		return nil, err
	}
	annotations := map[string]string{
		ExpiryAnnotation:  cred.Token.ExpiresAt.UTC().Format(time.RFC3339),
		RefreshAnnotation: cred.Token.IssuedAt.UTC().Format(time.RFC3339),
		InputsAnnotation:  inputs,
	}
	if cred.Audience != "" {
		annotations[AudienceAnnotation] = cred.Audience
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: b.secretName(), Namespace: obj.GetNamespace(),
			Labels: map[string]string{BindingLabel: secretnames.LabelValue(obj.GetName())}, Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: obj.GetName(), UID: obj.GetUID(),
				Controller: ptrTo(true), BlockOwnerDeletion: ptrTo(true),
			}},
		},
		Type: corev1.SecretTypeDockerConfigJson,
		Data: map[string][]byte{corev1.DockerConfigJsonKey: payload},
	}, nil
}

// writeSecret stores a credential in the binding's secret: created the first time, then patched in place, so the
// secret's UID never changes while the binding lives (kubelet matches pulled images to secrets by UID).
func (r *reconciler) writeSecret(ctx context.Context, s *scope, cred mint.Credential, inputs string) (*metav1.PartialObjectMetadata, error) {
	obj := s.binding.object()
	sec, err := r.secretFor(s.binding, s.desired.server, cred, inputs)
	if err != nil {
		return nil, err
	}
	if s.secret == nil {
		err := r.Client.Create(ctx, sec)
		if err == nil {
			return metadataOf(sec), nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, err
		}
		// The cache holds only labelled secrets: this may be ours from before the label (adopt it), or someone
		// else's (leave it alone).
		existing := secretMetadata()
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(sec), existing); err != nil {
			return nil, err
		}
		if !ownedBy(existing, obj) {
			return nil, &secretConflictError{namespace: sec.Namespace, name: sec.Name}
		}
	}
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"labels": sec.Labels, "annotations": sec.Annotations},
		"data":     sec.Data,
	})
	if err != nil {
		return nil, err
	}
	patched := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: sec.Name, Namespace: sec.Namespace}}
	if err := r.Client.Patch(ctx, patched, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return nil, err
	}
	return metadataOf(patched), nil
}

func metadataOf(sec *corev1.Secret) *metav1.PartialObjectMetadata {
	m := secretMetadata()
	m.ObjectMeta = *sec.ObjectMeta.DeepCopy()
	return m
}

// deleteSecrets deletes the owned secrets among names; callers unreference them first. The UID precondition keeps a
// secret of the same name created since (by a new binding of the same name) alive.
func (r *reconciler) deleteSecrets(ctx context.Context, names []string, owned []metav1.PartialObjectMetadata) error {
	for i := range owned {
		sec := &owned[i]
		if !slices.Contains(names, sec.Name) {
			continue
		}
		uid := sec.UID
		err := r.Client.Delete(ctx, sec, client.Preconditions{UID: &uid})
		if client.IgnoreNotFound(err) != nil && !apierrors.IsConflict(err) {
			return err
		}
	}
	return nil
}
