/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// The credential story: what a mint needs (the identity, and for workload identity a fresh service-account token),
// and what a failed mint means for the binding (its reason, its message, when to try again).

package acrpullbinding

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/mint"
)

// mintRequest builds the minting request, or reports (and returns nil) what keeps it from being built.
func (r *reconciler) mintRequest(ctx context.Context, s *scope) (*mint.Request, error) {
	d := s.desired
	req := &mint.Request{
		Server:          d.server,
		Scope:           d.scope,
		Cloud:           d.cloud,
		Audiences:       d.audiences,
		ManagedIdentity: d.managedIdentity,
		Fresh:           freshFor(d.refresh, r.Clock.Now),
	}
	if d.servicePrincipal != nil {
		// Only the Secret's version decides whether to mint; its contents are read when minting (withCredential).
		ok, err := r.servicePrincipalVersion(ctx, s)
		if !ok || err != nil {
			return nil, err
		}
		return req, nil
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
func (r *reconciler) serviceAccountToken(namespace, name string) func(ctx context.Context) (string, error) {
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
func (r *reconciler) mintFailed(s *scope, err error) ctrl.Result {
	reason, message := failureOf(err)
	if reason == string(azauth.IdentityNotFederated) && s.desired.workload != nil {
		message += "; " + r.federationHint(s)
	}
	reason, message = servicePrincipalFailure(s, reason, message, err)
	message = ongoingFailureMessage(s.original, reason, message)
	r.Metrics.MintAttempt(r.api.name(), reason)
	s.failBecause(reason, message, err)

	retryAfter := azauth.RetryAfterOf(err)
	wait := retryAfter
	if wait == 0 {
		wait = failingFor(s.original, s.now)
		wait = min(max(wait, 2*time.Second), 5*time.Minute)
	}
	wait = r.waitOnCredential(s, reason, retryAfter, wait)
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

// observeIssuer remembers the issuer of a service-account token the apiserver issued, read from the token itself:
// what Entra ID compares with a federated credential is what the apiserver put there, whatever its flags say.
func (r *reconciler) observeIssuer(token string) {
	if iss := jwtIssuer(token); iss != "" {
		r.issuer.Store(&iss)
	}
}

// federationHint says exactly which federated identity credential Entra ID is missing: the issuer of this cluster's
// service-account tokens, the federated account as subject, and the audience the controller asks for.
func (r *reconciler) federationHint(s *scope) string {
	issuer := "this cluster's service-account issuer (kubectl get --raw /.well-known/openid-configuration)"
	if iss := r.issuer.Load(); iss != nil {
		issuer = fmt.Sprintf("%q", *iss)
	}
	w := s.desired.workload
	subject := "system:serviceaccount:" + s.binding.object().GetNamespace() + ":" + w.serviceAccount
	return fmt.Sprintf("identity %s needs a federated identity credential with issuer %s, subject %q and audience %q",
		w.clientID, issuer, subject, r.Config.ServiceAccountTokenAudience)
}

// jwtIssuer reads the iss claim of a JWT without verifying it (the apiserver just issued it), or "".
func jwtIssuer(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Issuer
}
