/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/mint"
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
func (r *Reconciler) resolveSpec(_ context.Context, s *scope) (ctrl.Result, error) {
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
func (r *Reconciler) checkServer(_ context.Context, s *scope) (ctrl.Result, error) {
	if err := serverAllowed(s.desired.server, r.Config.AllowedServerSuffixes); err != nil {
		s.fail(acrv1beta2.ReasonServerNotAllowed, err.Error())
		s.stop = true
	}
	return ctrl.Result{}, nil
}

// serverAllowed accepts a bare host name equal to an allowed suffix or ending in "." plus one.
func serverAllowed(server string, suffixes []string) error {
	if len(suffixes) == 0 {
		return nil
	}
	u, err := url.Parse("https://" + server)
	if err != nil || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" ||
		u.Hostname() != server {
		return fmt.Errorf("ACR server %q is not a plain host name", server)
	}
	host := strings.ToLower(u.Hostname())
	for _, suffix := range suffixes {
		if host == suffix || strings.HasSuffix(host, "."+suffix) {
			return nil
		}
	}
	return fmt.Errorf("ACR server %q is not in the allowed ACR server suffixes: %s", server, strings.Join(suffixes, ", "))
}

// loadServiceAccount reads the target service account; its absence is reported but does not stop minting, so the
// secret is ready the moment the account appears.
func (r *Reconciler) loadServiceAccount(ctx context.Context, s *scope) (ctrl.Result, error) {
	sa, err := r.serviceAccount(ctx, s.binding.object().GetNamespace(), s.desired.targetServiceAccount)
	if err != nil {
		return ctrl.Result{}, err
	}
	s.targetSA = sa
	return ctrl.Result{}, nil
}

func (r *Reconciler) serviceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error) {
	sa := &corev1.ServiceAccount{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, sa)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return sa, err
}

// reconcileSecret mints a new credential when the secret's observed state calls for it, and writes it in place.
// A failed mint keeps the existing secret: it stays valid until its token expires.
func (r *Reconciler) reconcileSecret(ctx context.Context, s *scope) (ctrl.Result, error) {
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
		return ctrl.Result{RequeueAfter: at.Sub(s.now)}, nil
	}

	cred, err := r.Minter.Mint(ctx, *req)
	if err != nil {
		return r.mintFailed(s, err), nil
	}
	r.Metrics.MintAttempt(r.api.name(), acrv1beta2.ReasonTokenMinted)
	if s.secret, err = r.writeSecret(ctx, s, cred, inputs); err != nil {
		// A secret the cache does not hold (one without the controller's label, such as a hand-made one) shows up
		// only here.
		return ctrl.Result{}, s.conflicted(err)
	}
	s.shared = r.shareCredential(ctx, s, cred, inputs)
	at := s.desired.refresh.refreshAt(cred.Token.IssuedAt, cred.Token.ExpiresAt, spread)
	return ctrl.Result{RequeueAfter: max(at.Sub(s.now), time.Second)}, nil
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

// mintRequest builds the minting request, or reports (and returns nil) what keeps it from being built.
func (r *Reconciler) mintRequest(ctx context.Context, s *scope) (*mint.Request, error) {
	d := s.desired
	req := &mint.Request{
		Server:          d.server,
		Scope:           d.scope,
		Cloud:           d.cloud,
		Audiences:       d.audiences,
		ManagedIdentity: d.managedIdentity,
		Fresh:           freshFor(d.refresh, r.Clock.Now),
	}
	if d.workload == nil {
		return req, nil
	}
	namespace := s.binding.object().GetNamespace()
	sa, err := r.serviceAccount(ctx, namespace, d.workload.serviceAccount)
	if err != nil {
		return nil, err
	}
	if sa == nil {
		s.fail(acrv1beta2.ReasonServiceAccountNotFound,
			fmt.Sprintf("federated service account %q not found", d.workload.serviceAccount))
		return nil, nil
	}
	s.federatedSA = sa
	wi := d.workload.resolvedFrom(sa)
	if wi.clientID == "" || wi.tenantID == "" {
		s.fail(acrv1beta2.ReasonIdentityMissing, fmt.Sprintf(
			"no client and tenant ID: set them in spec.auth.workloadIdentity or annotate service account %q with %s and %s",
			wi.serviceAccount, workloadClientIDAnnotation, workloadTenantIDAnnotation))
		return nil, nil
	}
	// The resolved IDs are part of the inputs: re-annotating the account mints a new token.
	s.desired.workload = &wi
	req.WorkloadIdentity = &mint.WorkloadIdentity{
		WorkloadIdentity: azauth.WorkloadIdentity{
			TenantID:  wi.tenantID,
			ClientID:  wi.clientID,
			Assertion: r.serviceAccountToken(namespace, wi.serviceAccount),
		},
		ServiceAccount: namespace + "/" + wi.serviceAccount,
	}
	return req, nil
}

// serviceAccountToken requests a token for the federated account, for the single audience Entra ID trusts.
func (r *Reconciler) serviceAccountToken(namespace, name string) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			Audiences:         []string{r.Config.ServiceAccountTokenAudience},
			ExpirationSeconds: ptrTo(int64(serviceAccountTokenSeconds)),
		}}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
		if err := r.Client.SubResource("token").Create(ctx, sa, tr); err != nil {
			return "", &serviceAccountTokenError{namespace: namespace, name: name, err: err}
		}
		r.observeIssuer(tr.Status.Token)
		return tr.Status.Token, nil
	}
}

// mintFailed records a failed mint and schedules the next attempt: as Azure asked (Retry-After), else backing off
// with how long the binding has been failing, but never so late that a still-valid token expires unretried.
func (r *Reconciler) mintFailed(s *scope, err error) ctrl.Result {
	reason, message := failureOf(err)
	if reason == string(azauth.IdentityNotFederated) && s.desired.workload != nil {
		message += "; " + r.federationHint(s)
	}
	r.Metrics.MintAttempt(r.api.name(), reason)
	s.failBecause(reason, message, err)

	wait := azauth.RetryAfterOf(err)
	if wait == 0 {
		wait = failingFor(s.original, s.now)
		wait = min(max(wait, 2*time.Second), 5*time.Minute)
	}
	if s.secret != nil {
		if _, expires, ok := tokenTimes(s.secret.Annotations); ok && expires.After(s.now) {
			wait = min(wait, max(expires.Sub(s.now)/4, time.Second))
		}
	}
	return ctrl.Result{RequeueAfter: wait}
}

// failingFor is how long the binding has been not Ready for a failure, read from its condition.
func failingFor(st bindingStatus, now time.Time) time.Duration {
	for _, c := range st.Conditions {
		if c.Type == acrv1beta2.ConditionReady && c.Status == metav1.ConditionFalse {
			return now.Sub(c.LastTransitionTime.Time)
		}
	}
	return 0
}

// failureOf turns a mint error into a condition reason and a message fit for users (no tokens, no response bodies).
func failureOf(err error) (reason, message string) {
	var saErr *serviceAccountTokenError
	if errors.As(err, &saErr) {
		return acrv1beta2.ReasonServiceAccountTokenFailed, saErr.Error()
	}
	var azErr *azauth.Error
	if errors.As(err, &azErr) {
		return string(azErr.Kind), azErr.Error()
	}
	return acrv1beta2.ReasonAzureUnavailable, "minting failed"
}

type serviceAccountTokenError struct {
	namespace, name string
	err             error
}

func (e *serviceAccountTokenError) Error() string {
	reason := string(apierrors.ReasonForError(e.err))
	if reason == "" {
		reason = "request failed"
	}
	return fmt.Sprintf("requesting a token for service account %s/%s: %s", e.namespace, e.name, reason)
}

func (e *serviceAccountTokenError) Unwrap() error { return e.err }

func ptrTo[T any](v T) *T { return &v }

// attachSecret lists the secret, and those the pass created for siblings, in the target service account's
// imagePullSecrets, so new pods get them.
func (r *Reconciler) attachSecret(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.targetSA == nil || s.secret == nil {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.editPullSecrets(ctx, s.targetSA, func(refs []corev1.LocalObjectReference) []corev1.LocalObjectReference {
		return withPullSecrets(refs, append([]string{s.secret.Name}, s.shared...)...)
	})
}

// detachFromOtherServiceAccounts removes the secret from accounts the binding no longer targets. Without a secret
// of its own there is nothing of the binding's to remove: the name may be referenced for someone else's.
func (r *Reconciler) detachFromOtherServiceAccounts(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.secret == nil {
		return ctrl.Result{}, nil
	}
	name := s.secret.Name
	return ctrl.Result{}, r.detachEverywhere(ctx, s.binding.object().GetNamespace(), []string{name}, s.desired.targetServiceAccount)
}

// removeExtraneousSecrets deletes secrets the binding owns under other names (left by a renamed scheme), after
// unreferencing them.
func (r *Reconciler) removeExtraneousSecrets(ctx context.Context, s *scope) (ctrl.Result, error) {
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

// reconcileDelete unreferences, then deletes, the binding's secrets, then lets the binding go.
func (r *Reconciler) reconcileDelete(ctx context.Context, b binding) error {
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
	names := make([]string, 0, len(owned))
	for _, sec := range owned {
		names = append(names, sec.Name)
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
func (r *Reconciler) cleanUpVanished(ctx context.Context, key types.NamespacedName) error {
	name := r.secretNameOf(key.Name)
	sec := secretMetadata()
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: name}, sec); err != nil {
		// The usual case: reconcileDelete already removed it.
		return client.IgnoreNotFound(err)
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
	return r.deleteSecrets(ctx, []string{name}, []metav1.PartialObjectMetadata{*sec})
}

// secretNameOf is the secret name of a binding of this API version named bindingName.
func (r *Reconciler) secretNameOf(bindingName string) string {
	probe := r.api.newObject()
	probe.SetName(bindingName)
	return r.api.wrap(probe).secretName()
}

// bindingOwner is the owner reference naming a binding of this API group whose secret the secret is, or nil: a
// secret of the same name may belong to someone else, who keeps it.
func (r *Reconciler) bindingOwner(sec *metav1.PartialObjectMetadata) (*metav1.OwnerReference, error) {
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
