/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"context"
	"fmt"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// identityRecheck is how often a refused binding looks at the allow-list again, which the controller does not watch:
// an administrator who allows the identity sees the binding recover within it.
const identityRecheck = 2 * time.Minute

// checkIdentity refuses a managed identity the administrator's allow-list does not give the binding's namespace,
// before any token is requested for it (v1beta1's environment default counts as the identity of a binding naming
// none). A secret minted before the refusal is left as it is, attached, and no longer refreshed: deleting it would
// break running workloads at once on an allow-list edit, while it stops working anyway when its token expires,
// which the status says.
func (r *reconciler) checkIdentity(ctx context.Context, s *scope) (ctrl.Result, error) {
	namespace := s.binding.object().GetNamespace()
	refusal := r.identityAllowed(namespace, s.desired)
	if refusal == nil {
		return ctrl.Result{}, nil
	}
	message := refusal.Error()
	// The cache's copy is enough: it only words the message and keeps the status's token times.
	if sec, err := r.ownSecret(ctx, s.binding); err == nil && sec != nil {
		s.secret = sec
		if _, expires, ok := tokenTimes(sec.Annotations); ok {
			message += fmt.Sprintf("; secret %s is no longer refreshed and stops working when its token expires at %s",
				sec.Name, expires.UTC().Format(time.RFC3339))
		}
	}
	s.fail(acrv1beta2.ReasonIdentityNotAllowed, message)
	s.stop = true
	return ctrl.Result{RequeueAfter: identityRecheck}, nil
}

// identityAllowed returns why d's managed identity may not be used in namespace, or nil if it may (or d uses none,
// or no allow-list is configured).
func (r *reconciler) identityAllowed(namespace string, d desiredState) error {
	mi := d.managedIdentity
	if mi == nil || r.Config.ManagedIdentityAllowList == nil {
		return nil
	}
	allowList, err := r.Config.ManagedIdentityAllowList.Current()
	if err != nil {
		return fmt.Errorf("the managed-identity allow-list cannot be read, so no managed identity is allowed: %w", err)
	}
	if allowList.Allows(namespace, mi.ClientID, mi.ResourceID) {
		return nil
	}
	id := fmt.Sprintf("client ID %q", mi.ClientID)
	if mi.ClientID == "" {
		id = fmt.Sprintf("resource ID %q", mi.ResourceID)
	}
	return fmt.Errorf("managed identity %s is not allowed in namespace %q by the managed-identity allow-list", id, namespace)
}
