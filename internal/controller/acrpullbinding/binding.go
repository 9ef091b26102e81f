/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"errors"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/acrpull/acrpull/internal/azauth"
)

// binding is what the engine needs from an AcrPullBinding of either API version. Each version has a thin adapter;
// all behaviour lives in the engine, so the versions cannot drift apart.
type binding interface {
	// object is the API object itself.
	object() client.Object
	// secretName is the predictable name of the binding's pull secret.
	secretName() string
	// desired normalizes the spec, with the controller's defaults applied. An error means the spec cannot work.
	desired(cfg Config) (desiredState, error)
	// targetServiceAccount is the account that receives the secret.
	targetServiceAccount() string
	// serviceAccountNames are the accounts the binding depends on, for the watch index.
	serviceAccountNames() []string
	// credentialSecretName is the Secret of the binding's namespace holding its service principal's credential, for
	// the watch index; "" when it uses none.
	credentialSecretName() string
	getStatus() bindingStatus
	setStatus(bindingStatus)
}

// bindingStatus is the status both versions share.
type bindingStatus struct {
	LastTokenRefreshTime *metav1.Time
	TokenExpirationTime  *metav1.Time
	Error                string
	ObservedGeneration   int64
	TokenAudience        string
	Conditions           []metav1.Condition
}

// desiredState is a binding's spec in the engine's terms.
type desiredState struct {
	server string
	scope  string
	cloud  azauth.Cloud
	// audiences are the Entra ID audiences to try, in order.
	audiences []string
	// Exactly one of managedIdentity, workload and servicePrincipal is set.
	managedIdentity  *azauth.ManagedIdentity
	workload         *workloadRef
	servicePrincipal *servicePrincipalRef
	// targetServiceAccount receives the secret.
	targetServiceAccount string
	refresh              refreshPolicy
}

// workloadRef is a federated service account; empty IDs come from its azure.workload.identity annotations.
type workloadRef struct {
	serviceAccount string
	clientID       string
	tenantID       string
}

// resolvedFrom fills in what the spec leaves out from the federated account's azure.workload.identity annotations:
// without a client ID in the spec, both IDs come from the account.
func (w workloadRef) resolvedFrom(sa *corev1.ServiceAccount) workloadRef {
	if w.clientID == "" {
		w.clientID, w.tenantID = sa.Annotations[workloadClientIDAnnotation], sa.Annotations[workloadTenantIDAnnotation]
	}
	return w
}

// inputs lists everything the credential is minted from, so that changing any of them mints a new one.
func (d desiredState) inputs() []string {
	parts := []string{"server=" + strings.ToLower(d.server), "scope=" + d.scope, "authority=" + d.cloud.AuthorityHost,
		"audiences=" + strings.Join(d.audiences, ",")}
	if mi := d.managedIdentity; mi != nil {
		parts = append(parts, "mi.client="+strings.ToLower(mi.ClientID), "mi.resource="+strings.ToLower(mi.ResourceID))
	}
	if wi := d.workload; wi != nil {
		parts = append(parts, "wi.sa="+wi.serviceAccount, "wi.client="+strings.ToLower(wi.clientID),
			"wi.tenant="+strings.ToLower(wi.tenantID))
	}
	if sp := d.servicePrincipal; sp != nil {
		// The Secret's version is in: rotating the credential mints a new token at once.
		parts = append(parts, "sp.client="+strings.ToLower(sp.clientID), "sp.tenant="+strings.ToLower(sp.tenantID),
			"sp.secret="+sp.secretName, "sp.version="+sp.version)
	}
	return parts
}

// errInvalidSpec marks specs that can never work; the binding waits for a spec change.
var errInvalidSpec = errors.New("invalid spec")

// audiencesFor lists the Entra ID audiences to try: the registry's own first (it works where ARM tokens are
// disabled), then the cloud's ARM audience, which every registry accepted before.
func audiencesFor(cfg Config, armAudience string) []string {
	var out []string
	for _, a := range []string{cfg.ACRAudience, armAudience} {
		if a != "" && (len(out) == 0 || out[0] != a) {
			out = append(out, a)
		}
	}
	return out
}
