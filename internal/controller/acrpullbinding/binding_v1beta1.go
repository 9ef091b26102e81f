/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"fmt"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding/secretnames"
)

// v1beta1RefreshMargin is msi-acrpull's refresh point: 30 minutes before the token expires.
const v1beta1RefreshMargin = 30 * time.Minute

// v1beta1ARMAudience is the ARM audience msi-acrpull's v1beta1 requested from IMDS unless ARM_RESOURCE said otherwise.
const v1beta1ARMAudience = "https://management.azure.com/"

// v1beta1API adapts msi-acrpull.microsoft.com/v1beta1 bindings.
type v1beta1API struct{}

func (v1beta1API) name() string               { return "acrpullbinding-v1beta1" }
func (v1beta1API) newObject() client.Object   { return &acrv1beta1.AcrPullBinding{} }
func (v1beta1API) newList() client.ObjectList { return &acrv1beta1.AcrPullBindingList{} }
func (v1beta1API) bindingNameOf(secret string) (string, bool) {
	return strings.CutSuffix(secret, secretnames.V1beta1Suffix)
}
func (v1beta1API) wrap(o client.Object) binding {
	return v1beta1Binding{o.(*acrv1beta1.AcrPullBinding)}
}

type v1beta1Binding struct{ *acrv1beta1.AcrPullBinding }

func (b v1beta1Binding) object() client.Object { return b.AcrPullBinding }

func (b v1beta1Binding) secretName() string { return secretnames.V1beta1(b.Name) }

func (b v1beta1Binding) targetServiceAccount() string {
	if b.Spec.ServiceAccountName == "" {
		return "default"
	}
	return b.Spec.ServiceAccountName
}

func (b v1beta1Binding) serviceAccountNames() []string { return []string{b.targetServiceAccount()} }

// desired applies the controller defaults to empty fields. Unlike msi-acrpull, an identity named in the spec always
// wins over one from the environment, whichever kind of ID each is.
// credentialSecretName: v1beta1 bindings use managed identities only.
func (v1beta1Binding) credentialSecretName() string { return "" }

func (b v1beta1Binding) desired(cfg Config) (desiredState, error) {
	spec, defaults := b.Spec, cfg.V1beta1
	d := desiredState{
		server:               spec.AcrServer,
		scope:                spec.Scope,
		cloud:                azauth.PublicCloud,
		targetServiceAccount: b.targetServiceAccount(),
		refresh:              beforeExpiry(v1beta1RefreshMargin),
	}
	if d.server == "" {
		d.server = defaults.ACRServer
	}
	if d.server == "" {
		return d, fmt.Errorf("%w: spec.acrServer is empty and the controller has no ACR_SERVER default", errInvalidSpec)
	}
	mi := &azauth.ManagedIdentity{ClientID: spec.ManagedIdentityClientID}
	switch {
	case spec.ManagedIdentityClientID != "":
	case spec.ManagedIdentityResourceID != "":
		mi.ResourceID = spec.ManagedIdentityResourceID
	case defaults.ClientID != "":
		mi.ClientID = defaults.ClientID
	case defaults.ResourceID != "":
		mi.ResourceID = defaults.ResourceID
	default:
		return d, fmt.Errorf("%w: no managed identity in the spec and no MANAGED_IDENTITY_CLIENT_ID or MANAGED_IDENTITY_RESOURCE_ID default", errInvalidSpec)
	}
	d.managedIdentity = mi
	arm := defaults.ARMResource
	if arm == "" {
		arm = v1beta1ARMAudience
	}
	d.audiences = audiencesFor(cfg, arm)
	return d, nil
}

func (b v1beta1Binding) getStatus() bindingStatus {
	s := b.Status
	return bindingStatus{LastTokenRefreshTime: s.LastTokenRefreshTime, TokenExpirationTime: s.TokenExpirationTime,
		Error: s.Error, ObservedGeneration: s.ObservedGeneration, TokenAudience: s.TokenAudience, Conditions: s.Conditions}
}

func (b v1beta1Binding) setStatus(s bindingStatus) {
	b.Status = acrv1beta1.AcrPullBindingStatus{LastTokenRefreshTime: s.LastTokenRefreshTime,
		TokenExpirationTime: s.TokenExpirationTime, Error: s.Error, ObservedGeneration: s.ObservedGeneration,
		TokenAudience: s.TokenAudience, Conditions: s.Conditions}
}
