/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package acrpullbinding reconciles AcrPullBindings of both API versions with one engine: it mints a registry
// credential for the binding's identity, keeps it in a kubernetes.io/dockerconfigjson secret that is refreshed in
// place before the token expires, and attaches that secret to the target service account.
package acrpullbinding

import (
	"context"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/identityallowlist"
	"github.com/acrpull/acrpull/internal/mint"
)

// Minter mints registry credentials; mint.Minter is the real one.
type Minter interface {
	Mint(ctx context.Context, req mint.Request) (mint.Credential, error)
}

// MetricsSink receives what the controller observes; metrics.Metrics implements it.
type MetricsSink interface {
	TokenExpiry(kind, namespace, name string, expires time.Time)
	ForgetBinding(kind, namespace, name string)
	MintAttempt(kind, reason string)
	// BindingReadiness is told every binding's Ready condition after each pass; the sink counts what changed.
	BindingReadiness(kind, namespace, name, ready, reason string)
	// BindingVerification is told every binding's Verified condition after each pass ("" when it has none).
	BindingVerification(kind, namespace, name, verified, reason string)
	// PullCheck counts a registry request that checked a credential, by outcome.
	PullCheck(reason string)
}

// Config is the controller-wide configuration, from flags and environment.
type Config struct {
	// ServiceAccountTokenAudience is the only audience the controller requests service-account tokens for.
	ServiceAccountTokenAudience string
	// ACRAudience is the Entra ID audience tried first; empty skips it and uses the cloud's ARM audience only.
	ACRAudience string
	// TTLRotationFraction is the share of a v1beta2 token's life after which it is replaced.
	TTLRotationFraction float64
	// AllowedServerSuffixes limits the registries tokens are sent to; empty allows none.
	AllowedServerSuffixes []string
	// AuthorityHosts are the Entra ID authorities an AirgappedCloud binding may name; nil allows the known clouds'
	// only. A binding's author must not choose where the controller sends service-account tokens.
	AuthorityHosts *azauth.AuthorityHosts
	// LabelSelector limits the bindings this controller serves (sharding); nil serves all.
	LabelSelector labels.Selector
	// V1beta1 holds msi-acrpull's controller-wide defaults.
	V1beta1 V1beta1Defaults

	// VerifyPull asks the registry, once per new credential, whether it can read the scope's repository, and reports
	// the answer as the Verified condition (--verify-pull). Off, no Verified condition is written.
	VerifyPull bool

	// ManagedIdentityAllowList says which namespaces may use which managed identities (--managed-identity-allow-list);
	// nil lets every namespace use every identity assigned to the nodes, as msi-acrpull did.
	ManagedIdentityAllowList IdentityAllowList
}

// IdentityAllowList is the administrator's allow-list as it stands now; identityallowlist.Dir is the real one. An
// error means it cannot be read, and every managed identity is refused.
type IdentityAllowList interface {
	Current() (*identityallowlist.AllowList, error)
}

// V1beta1Defaults are msi-acrpull's environment defaults for v1beta1 bindings that leave fields empty.
type V1beta1Defaults struct {
	ACRServer  string
	ClientID   string
	ResourceID string
	// ARMResource overrides the ARM audience of v1beta1 managed-identity tokens (msi-acrpull's ARM_RESOURCE).
	ARMResource string
}

// reconciler reconciles one API version of AcrPullBinding. SetupWithManager is the only way to build one, so none
// exists without every field it needs.
type reconciler struct {
	Client client.Client
	// APIReader reads around the cache, for conflicts the cache cannot settle yet.
	APIReader client.Reader
	Minter    Minter
	Recorder  events.EventRecorder
	Metrics   MetricsSink
	Clock     clock.Clock
	Config    Config

	api apiVersion
	// issuer is the iss claim of the last service-account token the apiserver issued, for IdentityNotFederated's
	// message.
	issuer atomic.Pointer[string]
	// served carries siblings whose secrets a pass created, to be reconciled (shareCredential).
	served chan event.GenericEvent
	// verifier checks new credentials against the registry; nil when Config.VerifyPull is off.
	verifier *pullVerifier
	// credentials reads the metadata of Secrets labelled as service principals' credentials.
	credentials client.Reader
	// waiting holds the bindings waiting on a credential Azure fails for now (wake.go).
	waiting *waitingRoom
	// goneWithoutFinalizer holds the bindings this process saw deleted without the finalizer, for cleanUpVanished.
	goneWithoutFinalizer recentDeletions
	// unattached holds the secrets passes created for siblings and have not listed in the account yet.
	unattached unattachedSecrets
}

// apiVersion is the adapter of one API version.
type apiVersion interface {
	name() string
	newObject() client.Object
	newList() client.ObjectList
	wrap(client.Object) binding
	// bindingNameOf is the name of the binding a secret name of this version belongs to, if it has the version's
	// shape. A name cut and hashed for length maps to no real binding; callers treat that like a binding gone.
	bindingNameOf(secretName string) (string, bool)
}

// phase is one ordered step of a reconcile pass. A phase that sets s.stop ends the pass.
type phase func(ctx context.Context, s *scope) (ctrl.Result, error)

// +kubebuilder:rbac:groups=acrpull.microsoft.com,resources=acrpullbindings,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=acrpull.microsoft.com,resources=acrpullbindings/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=acrpull.microsoft.com,resources=acrpullbindings/finalizers,verbs=update
// +kubebuilder:rbac:groups=msi-acrpull.microsoft.com,resources=acrpullbindings,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=msi-acrpull.microsoft.com,resources=acrpullbindings/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=msi-acrpull.microsoft.com,resources=acrpullbindings/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=serviceaccounts/token,verbs=create
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one binding's secret and service-account reference in line with its spec.
func (r *reconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, reterr error) {
	obj := r.api.newObject()
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		if apierrors.IsNotFound(err) {
			r.stopWaiting(req.NamespacedName)
			return ctrl.Result{}, r.cleanUpVanished(ctx, req.NamespacedName)
		}
		return ctrl.Result{}, err
	}
	if r.Config.LabelSelector != nil && !r.Config.LabelSelector.Matches(labels.Set(obj.GetLabels())) {
		// Another shard serves it; the cache should not even hold it.
		r.stopWaiting(req.NamespacedName)
		return ctrl.Result{}, nil
	}
	b := r.api.wrap(obj)

	if !obj.GetDeletionTimestamp().IsZero() {
		r.stopWaiting(req.NamespacedName)
		return ctrl.Result{}, r.reconcileDelete(ctx, b)
	}
	s := newScope(b, r.Clock.Now())
	// The finalizer comes first, so nothing the controller creates can outlive the binding; except on a binding's
	// first passes, before it was ever usable (see deferFinalizer).
	if deferFinalizer(obj, s.original) {
		defer func() {
			// Only once the pass made the binding usable: a binding that cannot be served creates nothing to protect.
			if reterr == nil && s.status.TokenExpirationTime != nil {
				result = lowestNonZero(result, finalizerFollowUp)
			}
		}()
	} else if err := r.ensureFinalizer(ctx, obj); err != nil {
		return ctrl.Result{}, err
	}

	// Status is written once per pass, from what the phases observed.
	defer func() {
		// Siblings waiting on secrets this pass created go on, whether or not it got to attach them.
		s.sharing.release()
		if !s.waiting {
			r.stopWaiting(req.NamespacedName)
		}
		reterr = kerrors.NewAggregate([]error{reterr, r.patchStatus(ctx, s, reterr)})
	}()

	for _, p := range []phase{
		r.resolveSpec,
		r.checkServer,
		r.checkIdentity,
		r.loadServiceAccount,
		r.reconcileSecret,
		r.attachSecret,
		r.detachFromOtherServiceAccounts,
		r.removeExtraneousSecrets,
		r.verifyPull,
	} {
		res, err := p(ctx, s)
		result = lowestNonZero(result, res)
		if err != nil || s.stop {
			return result, err
		}
	}
	return result, nil
}

// deferFinalizer says whether this pass leaves the finalizer to a follow-up pass: the binding lacks it and its status
// has never named a token (it has not been usable yet). A new binding then becomes usable one write sooner, and in a
// burst the finalizer writes wait at low priority behind the bindings still without a secret. Until the follow-up adds
// it, the binding's secret is owned by it (the garbage collector deletes it with the binding) and a deletion is
// undone by cleanUpVanished, as for a binding deleted before its finalizer was added.
func deferFinalizer(obj client.Object, st bindingStatus) bool {
	return !containsFinalizer(obj) && st.TokenExpirationTime == nil
}

// finalizerFollowUp is the requeue of a binding whose finalizer was deferred: at low priority, after the status
// patch had time to reach the cache (a pass that read the status from before it would defer again).
var finalizerFollowUp = ctrl.Result{RequeueAfter: time.Second, Priority: ptrTo(handler.LowPriority)}

func (r *reconciler) ensureFinalizer(ctx context.Context, obj client.Object) error {
	if controllerutil.ContainsFinalizer(obj, Finalizer) {
		return nil
	}
	base := obj.DeepCopyObject().(client.Object)
	controllerutil.AddFinalizer(obj, Finalizer)
	return r.Client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// patchStatus writes the status the pass arrived at, if it differs from what the binding shows.
func (r *reconciler) patchStatus(ctx context.Context, s *scope, reterr error) error {
	summarizeStatus(s, reterr)
	r.reportVerification(s)
	obj := s.binding.object()
	if s.status.TokenExpirationTime != nil {
		r.Metrics.TokenExpiry(r.api.name(), obj.GetNamespace(), obj.GetName(), s.status.TokenExpirationTime.Time)
	}
	if ready := meta.FindStatusCondition(s.status.Conditions, acrv1beta2.ConditionReady); ready != nil {
		r.Metrics.BindingReadiness(r.api.name(), obj.GetNamespace(), obj.GetName(), string(ready.Status), ready.Reason)
	}
	if eventType, reason, message, emit := readyTransition(s.original.Conditions, s.status.Conditions); emit {
		r.Recorder.Eventf(obj, nil, eventType, reason, "Reconcile", "%s", message)
	}
	logReadiness(ctrl.LoggerFrom(ctx), s)
	if equality.Semantic.DeepEqual(s.original, s.status) {
		return nil
	}
	base := obj.DeepCopyObject().(client.Object)
	s.binding.setStatus(s.status)
	return client.IgnoreNotFound(r.writeStatus(ctx, obj, base))
}

// writeStatus replaces the status with an update conditioned on the resourceVersion the pass read, and merge-patches
// only when that version is stale. The pass computes the whole status, so both write the same; but for a custom
// resource the apiserver serves a patch by encoding the stored object to JSON, merging and decoding the result, and
// the client computes the patch from two encodings: an update spares both (in a 10,000 burst, 7% of the apiserver's
// CPU on status writes and 12% of ours: docs/performance.md). A conflict means the cache lags the binding (its own
// last write, usually): the patch then writes this pass's status over it, as it always did, for one more request.
func (r *reconciler) writeStatus(ctx context.Context, obj, base client.Object) error {
	err := r.Client.Status().Update(ctx, obj)
	if !apierrors.IsConflict(err) {
		return err
	}
	return r.Client.Status().Patch(ctx, obj, client.MergeFrom(base))
}

// lowestNonZero merges two results: the sooner requeue wins.
func lowestNonZero(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0:
		return a
	case b.RequeueAfter < a.RequeueAfter:
		return b
	}
	return a
}

// scope carries what one reconcile pass learns, phase to phase.
type scope struct {
	binding binding
	now     time.Time
	// original is the status as read; status is what the pass writes.
	original bindingStatus
	status   bindingStatus

	// desired is set by resolveSpec.
	desired desiredState
	// targetSA is set by loadServiceAccount; nil when the account does not exist.
	targetSA *corev1.ServiceAccount
	// federatedSA is set by mintRequest for workload identity: the account whose token is traded, as read.
	federatedSA *corev1.ServiceAccount
	// secret is set by reconcileSecret: the binding's secret as it stands after the phase, nil if none exists.
	secret *metav1.PartialObjectMetadata
	// shared are the secrets reconcileSecret created for siblings, which attachSecret attaches with the binding's.
	shared []sharedSecret
	// sharing holds shared in reconciler.unattached until attachSecret has listed them; nil if no sibling needed one.
	sharing *sharing
	// failure is set by any phase that could not do its job; it becomes the Ready condition.
	failure *failure
	// credential is set by reconcileSecret before it mints: the key of the credential the binding needs, which
	// bindings waiting on it after a transient failure share (wake.go).
	credential string
	// waiting is set by mintFailed when the binding waits on credential, to be woken by its first success.
	waiting bool
	// heldExpiry is set by reconcileSecret before it mints: when the token the secret already holds for the current
	// inputs expires (zero when it holds none). A refresh that fails for a transient reason leaves the binding Ready
	// until then (summarizeStatus).
	heldExpiry time.Time
	// stop is set by a phase after which nothing more can be done this pass.
	stop bool
}

func newScope(b binding, now time.Time) *scope {
	st := b.getStatus()
	cp := st
	cp.Conditions = append([]metav1.Condition(nil), st.Conditions...)
	return &scope{binding: b, now: now, original: st, status: cp}
}

// failure is why a pass could not do its job: the binding is not Ready, or, for a transient failure while the secret
// still holds a valid token, Ready with the failure as its reason. Message never contains a token, nor does cause: Azure failures are
// azauth.Errors, built from status and error codes only, and the rest are the apiserver's.
type failure struct {
	reason  string
	message string
	// cause is the error behind the failure, for the log; nil when the message says it all.
	cause error
}

func (s *scope) fail(reason, message string) {
	s.failBecause(reason, message, nil)
}

func (s *scope) failBecause(reason, message string, cause error) {
	if s.failure == nil {
		s.failure = &failure{reason: reason, message: message, cause: cause}
	}
}
