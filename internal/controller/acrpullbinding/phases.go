/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding/acrserver"
)

// Annotations of the azure-workload-identity webhook, which federated service accounts already carry.
const (
	workloadClientIDAnnotation = "azure.workload.identity/client-id"
	workloadTenantIDAnnotation = "azure.workload.identity/tenant-id"
)

// serviceAccountTokenSeconds is the life of the assertions the controller requests: the apiserver's minimum, since
// each one is presented to Entra ID once, right away.
const serviceAccountTokenSeconds = 600

// resolveSpec turns the spec into the engine's terms; a spec that cannot work waits for the user to change it.
func (r *reconciler) resolveSpec(_ context.Context, s *scope) (ctrl.Result, error) {
	d, err := s.binding.desired(r.Config)
	if err != nil {
		reason := acrv1beta2.ReasonInvalidSpec
		if errors.Is(err, azauth.ErrAuthorityHostNotAllowed) {
			// Nothing was sent, and the existing secret stays until its token expires.
			reason = acrv1beta2.ReasonAuthorityHostNotAllowed
		}
		s.fail(reason, err.Error())
		s.stop = true
		return ctrl.Result{}, nil
	}
	s.desired = d
	return ctrl.Result{}, nil
}

// checkServer refuses registries outside --allowed-acr-server-suffixes before any token is requested for them.
func (r *reconciler) checkServer(_ context.Context, s *scope) (ctrl.Result, error) {
	if err := acrserver.Allowed(s.desired.server, r.Config.AllowedServerSuffixes); err != nil {
		s.fail(acrv1beta2.ReasonServerNotAllowed, err.Error())
		s.stop = true
	}
	return ctrl.Result{}, nil
}

// loadServiceAccount reads the target service account; its absence is reported but does not stop minting, so the
// secret is ready the moment the account appears.
func (r *reconciler) loadServiceAccount(ctx context.Context, s *scope) (ctrl.Result, error) {
	sa, err := r.serviceAccount(ctx, s.binding.object().GetNamespace(), s.desired.targetServiceAccount)
	if err != nil {
		return ctrl.Result{}, err
	}
	s.targetSA = sa
	return ctrl.Result{}, nil
}

func (r *reconciler) serviceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
	sa := &corev1.ServiceAccount{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sa)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return sa, err
}

// reconcileSecret mints a new credential when the secret's observed state calls for it, and writes it in place.
// A failed mint keeps the existing secret: it stays valid until its token expires.
func (r *reconciler) reconcileSecret(ctx context.Context, s *scope) (ctrl.Result, error) {
	obj := s.binding.object()
	secret, err := r.ownSecret(ctx, s.binding)
	if err != nil {
		return ctrl.Result{}, s.conflicted(err)
	}
	s.secret = secret

	req, err := r.mintRequest(ctx, s)
	if err != nil || req == nil {
		return ctrl.Result{}, err
	}
	inputs := inputsHash(s.desired.inputs()...)
	spread := spreadOf(string(obj.GetUID()))
	if due, at := mintDue(secret, inputs, s.desired.refresh, spread, s.now); !due {
		return scheduledRefresh(at.Sub(s.now)), nil
	}

	if inputs, err = r.withCredential(ctx, s, req, inputs); err != nil || inputs == "" {
		return ctrl.Result{}, err
	}
	s.credential = req.Key()
	s.heldExpiry = heldExpiry(secret, inputs)
	cred, err := r.Minter.Mint(ctx, *req)
	if err != nil {
		return r.mintFailed(s, err), nil
	}
	r.credentialWorks(ctx, s)
	r.Metrics.MintAttempt(r.api.name(), acrv1beta2.ReasonTokenMinted)
	if s.secret, err = r.writeSecret(ctx, s, cred, inputs); err != nil {
		// A secret the cache does not hold (one without the controller's label, such as a hand-made one) shows up
		// only here.
		return ctrl.Result{}, s.conflicted(err)
	}
	// Only now, with the secret written, is the registry asked whether the credential pulls: in the background, and
	// before siblings get their secrets, so that their passes find the check to wait for.
	r.startPullCheck(ctx, s, cred.Token)
	s.shared = r.shareCredential(ctx, s, cred, inputs)
	at := s.desired.refresh.refreshAt(cred.Token.IssuedAt, cred.Token.ExpiresAt, spread)
	return scheduledRefresh(max(at.Sub(s.now), time.Second)), nil
}

// conflicted reports a secretConflictError as the binding's SecretConflict and ends the pass; other errors pass
// through.
func (s *scope) conflicted(err error) error {
	var conflict *secretConflictError
	if !errors.As(err, &conflict) {
		return err
	}
	s.fail(acrv1beta2.ReasonSecretConflict, err.Error())
	s.stop = true
	return nil
}

// mintDue decides from the secret alone whether a new token is needed, and otherwise when it will be.
func mintDue(secret *metav1.PartialObjectMetadata, inputs string, policy refreshPolicy, spread float64, now time.Time) (bool, time.Time) {
	if secret == nil || secret.Annotations[InputsAnnotation] != inputs {
		return true, now
	}
	issued, expires, ok := tokenTimes(secret.Annotations)
	if !ok {
		return true, now
	}
	at := policy.refreshAt(issued, expires, spread)
	return !now.Before(at), at
}

// heldExpiry is when the token the secret holds expires, if it was minted for inputs; zero otherwise.
func heldExpiry(secret *metav1.PartialObjectMetadata, inputs string) time.Time {
	if secret == nil || secret.Annotations[InputsAnnotation] != inputs {
		return time.Time{}
	}
	_, expires, ok := tokenTimes(secret.Annotations)
	if !ok {
		return time.Time{}
	}
	return expires
}

// attachSecret lists the secret, and those the pass created for siblings, in the target service account's
// imagePullSecrets, so new pods get them.
func (r *reconciler) attachSecret(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.targetSA == nil || s.secret == nil {
		return ctrl.Result{}, nil
	}
	names := []string{s.secret.Name}
	for _, shared := range s.shared {
		names = append(names, shared.secret.Name)
	}
	if len(s.shared) == 0 {
		// A pass holding secrets of its own never waits, so no two passes wait on each other.
		r.awaitSharingPass(ctx, s)
	}
	err := r.editPullSecrets(ctx, s.targetSA, func(refs []corev1.LocalObjectReference) []corev1.LocalObjectReference {
		return withPullSecrets(refs, names...)
	})
	s.sharing.release()
	if err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.takeBackShared(ctx, s)
}

// maxSharingWait bounds how long a pass waits for another pass to list the secret it created for this binding; past
// it, the pass lists it itself.
const maxSharingWait = 5 * time.Second

// awaitSharingPass waits, when another pass created the binding's secret and has yet to list it in the account, until
// it has, and then reads the account afresh: the cache would not show the reference yet, and the edit would cost a
// conflict.
func (r *reconciler) awaitSharingPass(ctx context.Context, s *scope) {
	attached, ok := r.unattached.attachedSignal(client.ObjectKeyFromObject(s.secret))
	if !ok {
		return
	}
	wait, cancel := context.WithTimeout(ctx, maxSharingWait)
	defer cancel()
	select {
	case <-attached:
	case <-wait.Done():
		return
	}
	fresh := &corev1.ServiceAccount{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(s.targetSA), fresh); err == nil {
		s.targetSA = fresh
	}
}

// detachFromOtherServiceAccounts removes the secret from accounts the binding no longer targets. Without a secret
// of its own there is nothing of the binding's to remove: the name may be referenced for someone else's.
func (r *reconciler) detachFromOtherServiceAccounts(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.secret == nil {
		return ctrl.Result{}, nil
	}
	name := s.secret.Name
	return ctrl.Result{}, r.detachEverywhere(ctx, s.binding.object().GetNamespace(), []string{name}, s.desired.targetServiceAccount)
}

// removeExtraneousSecrets deletes secrets the binding owns under other names (left by a renamed scheme), after
// unreferencing them.
func (r *reconciler) removeExtraneousSecrets(ctx context.Context, s *scope) (ctrl.Result, error) {
	owned, err := r.ownedSecrets(ctx, s.binding.object())
	if err != nil {
		return ctrl.Result{}, err
	}
	var extra []string
	for _, sec := range owned {
		if sec.Name != s.binding.secretName() {
			extra = append(extra, sec.Name)
		}
	}
	if len(extra) == 0 {
		return ctrl.Result{}, nil
	}
	// Unreferencing first means no pod is admitted with a reference to a secret that is going away.
	if err := r.detachEverywhere(ctx, s.binding.object().GetNamespace(), extra, ""); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, r.deleteSecrets(ctx, extra, owned)
}
