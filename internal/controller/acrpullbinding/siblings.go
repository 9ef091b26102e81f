/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/acrpull/acrpull/internal/controller/acrpullbinding/acrserver"
	"github.com/acrpull/acrpull/internal/mint"
)

// maxSharedPerPass bounds the secrets one pass writes for siblings, so that a namespace receiving many bindings at
// once does not hold one worker for long; the siblings left over are served by their own passes as before.
const maxSharedPerPass = 32

var errEnough = errors.New("enough siblings")

// shareCredential hands the credential a pass just minted to the binding's siblings that need exactly it: bindings
// of the same namespace and API version, targeting the same service account, minted from the same inputs, and
// without a secret yet. Their secrets are created here and attached together with this binding's own in one
// service-account patch (attachSecret), so a burst of bindings for one account costs one patch of the account per
// pass instead of one per binding. Each sibling is queued (a no-op for one already queued, as in a burst; for one
// waiting out a backoff after the same failure, its recovery now), and its pass finds a current secret it owns and
// its name attached, and writes only its status.
//
// Only secrets this pass creates are attached: a name whose secret exists already may be someone else's secret,
// which the sibling's own pass reports as a conflict instead. A sibling deleted while this pass ran (the cache not
// showing it yet) may get a secret and a reference all the same: attachSecret takes both back (takeBackShared).
func (r *reconciler) shareCredential(ctx context.Context, s *scope, cred mint.Credential, inputs string) []sharedSecret {
	if s.targetSA == nil {
		return nil
	}
	self := s.binding.object()
	list := r.api.newList()
	// Read only: the cache's own objects, not copies.
	if err := r.Client.List(ctx, list, client.InNamespace(self.GetNamespace()),
		client.MatchingFields{serviceAccountIndex: s.desired.targetServiceAccount}, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	var shared []sharedSecret
	_ = meta.EachListItem(list, func(o runtime.Object) error {
		if len(shared) == maxSharedPerPass {
			return errEnough
		}
		sibling := r.api.wrap(o.(client.Object))
		d, ok := r.awaitsCredential(ctx, sibling, s, inputs)
		if !ok {
			return nil
		}
		sec, err := r.secretFor(sibling, d.server, cred, inputs)
		if err != nil {
			return nil
		}
		// Held before it exists, so that the sibling's pass cannot find the secret without finding the hold.
		key := client.ObjectKeyFromObject(sec)
		if s.sharing == nil {
			s.sharing = r.unattached.startSharing()
		}
		s.sharing.hold(key)
		// AlreadyExists: the sibling's own pass was quicker, or the name belongs to someone else; either way the
		// sibling's pass takes it from here.
		if err := r.Client.Create(ctx, sec); err != nil {
			s.sharing.giveUp(key)
			ctrl.LoggerFrom(ctx).V(1).Info("sibling's secret left to its own pass", "secret", sec.Name, "reason", apierrors.ReasonForError(err))
			return nil
		}
		shared = append(shared, sharedSecret{secret: *metadataOf(sec), siblingName: sibling.object().GetName(), sibling: sibling.object().GetUID()})
		r.wakeUp(sibling.object())
		return nil
	})
	return shared
}

// awaitsCredential says whether sibling has no secret and needs exactly the credential s minted from inputs, and
// returns its desired state. Every refresh of a binding asks this of its siblings, which almost always have their
// secret: the cheap checks come first, and the spec is resolved and hashed only for a sibling without one.
func (r *reconciler) awaitsCredential(ctx context.Context, sibling binding, s *scope, inputs string) (desiredState, bool) {
	obj := sibling.object()
	if obj.GetUID() == s.binding.object().GetUID() || !obj.GetDeletionTimestamp().IsZero() ||
		sibling.targetServiceAccount() != s.desired.targetServiceAccount {
		return desiredState{}, false
	}
	if r.Config.LabelSelector != nil && !r.Config.LabelSelector.Matches(labels.Set(obj.GetLabels())) {
		return desiredState{}, false
	}
	if secret, err := r.ownSecret(ctx, sibling); err != nil || secret != nil {
		return desiredState{}, false
	}
	d, err := sibling.desired(r.Config)
	if err != nil {
		return desiredState{}, false
	}
	// A sibling federated through the same account resolves its IDs as this pass did.
	if w := d.workload; w != nil && s.federatedSA != nil && w.serviceAccount == s.federatedSA.Name {
		resolved := w.resolvedFrom(s.federatedSA)
		d.workload = &resolved
	}
	// A sibling reading the same credential Secret uses the version this pass read.
	if sp, own := d.servicePrincipal, s.desired.servicePrincipal; sp != nil && own != nil && sp.secretName == own.secretName {
		resolved := *sp
		resolved.version = own.version
		d.servicePrincipal = &resolved
	}
	if acrserver.Allowed(d.server, r.Config.AllowedServerSuffixes) != nil || r.identityAllowed(obj.GetNamespace(), d) != nil ||
		inputsHash(d.inputs()...) != inputs {
		return desiredState{}, false
	}
	return d, true
}

// wakeUp queues a binding's reconcile. The queue is not the reconciler's to hold, so the request goes through a
// channel the controller watches; were it ever full, the binding would still be served by its own requeue.
func (r *reconciler) wakeUp(obj client.Object) {
	key := r.api.newObject()
	key.SetNamespace(obj.GetNamespace())
	key.SetName(obj.GetName())
	select {
	case r.served <- event.GenericEvent{Object: key}:
	default:
	}
}

// sharedSecret is a secret a pass created for a sibling, and the sibling's name and UID.
type sharedSecret struct {
	secret      metav1.PartialObjectMetadata
	siblingName string
	sibling     types.UID
}

// takeBackShared unreferences and deletes the secrets the pass shared with siblings that, after the attach, are
// being deleted or gone. Their deletion may have run between shareCredential creating the secret and attachSecret
// attaching it: it found no reference to remove, deleted the secret, and the attach then left the account naming a
// secret that no longer exists, which nothing would remove (seen in the crash-consistency soak). A deletion is
// handled only once this controller's cache shows it, so a cache read after the attach sees every deletion that ran
// before it.
func (r *reconciler) takeBackShared(ctx context.Context, s *scope) error {
	namespace := s.binding.object().GetNamespace()
	var names []string
	var secrets []metav1.PartialObjectMetadata
	for _, shared := range s.shared {
		live := r.api.newObject()
		err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: shared.siblingName}, live)
		if client.IgnoreNotFound(err) != nil {
			return err
		}
		if !siblingDeparted(err == nil, live, shared.sibling) {
			continue
		}
		names, secrets = append(names, shared.secret.Name), append(secrets, shared.secret)
	}
	if len(names) == 0 {
		return nil
	}
	ctrl.LoggerFrom(ctx).Info("siblings deleted while their secrets were shared: unreferencing and deleting them", "secrets", names)
	if err := r.detachEverywhereFresh(ctx, namespace, names); err != nil {
		return err
	}
	return r.deleteSecrets(ctx, names, secrets)
}

// siblingDeparted says whether the sibling a secret was shared with is gone (not found, or replaced by a binding of
// the same name) or being deleted.
func siblingDeparted(found bool, live client.Object, sibling types.UID) bool {
	return !found || live.GetUID() != sibling || !live.GetDeletionTimestamp().IsZero()
}
