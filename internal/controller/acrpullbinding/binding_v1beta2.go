/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"fmt"
	"strings"

	"sigs.k8s.io/controller-runtime/pkg/client"

	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/controller/acrpullbinding/secretnames"
)

// v1beta2API adapts acrpull.microsoft.com/v1beta2 bindings.
type v1beta2API struct{}

func (v1beta2API) name() string               { return "acrpullbinding-v1beta2" }
func (v1beta2API) newObject() client.Object   { return &acrv1beta2.AcrPullBinding{} }
func (v1beta2API) newList() client.ObjectList { return &acrv1beta2.AcrPullBindingList{} }
func (v1beta2API) bindingNameOf(secret string) (string, bool) {
	return strings.CutPrefix(secret, secretnames.V1beta2Prefix)
}
func (v1beta2API) wrap(o client.Object) binding {
	return v1beta2Binding{o.(*acrv1beta2.AcrPullBinding)}
}

type v1beta2Binding struct{ *acrv1beta2.AcrPullBinding }

func (b v1beta2Binding) object() client.Object { return b.AcrPullBinding }

func (b v1beta2Binding) secretName() string { return secretnames.V1beta2(b.Name) }

func (b v1beta2Binding) targetServiceAccount() string { return b.Spec.ServiceAccountName }

func (b v1beta2Binding) serviceAccountNames() []string {
	names := []string{b.targetServiceAccount()}
	if wi := b.Spec.Auth.WorkloadIdentity; wi != nil && wi.ServiceAccountName != b.Spec.ServiceAccountName {
		names = append(names, wi.ServiceAccountName)
	}
	return names
}

func (b v1beta2Binding) credentialSecretName() string {
	if sp := b.Spec.Auth.ServicePrincipal; sp != nil {
		return sp.SecretRef.Name
	}
	return ""
}

func (b v1beta2Binding) desired(cfg Config) (desiredState, error) {
	spec := b.Spec
	d := desiredState{
		server:               spec.ACR.Server,
		scope:                spec.ACR.Scope,
		targetServiceAccount: b.targetServiceAccount(),
		refresh:              fractionOfLifetime(cfg.TTLRotationFraction),
	}
	if spec.ACR.Environment == acrv1beta2.AzureEnvironmentAirgappedCloud {
		cc := spec.ACR.CloudConfig
		if cc == nil {
			return d, fmt.Errorf("%w: environment AirgappedCloud needs spec.acr.cloudConfig", errInvalidSpec)
		}
		// Checked here, so that siblings sharing a credential are held to it too.
		authority, err := cfg.AuthorityHosts.Check(cc.EntraAuthorityHost)
		if err != nil {
			return d, fmt.Errorf("spec.acr.cloudConfig.entraAuthorityHost: %w", err)
		}
		d.cloud = azauth.Cloud{AuthorityHost: authority, ARMAudience: cc.ResourceManagerAudience}
	} else {
		c, ok := azauth.CloudNamed(string(spec.ACR.Environment))
		if !ok {
			return d, fmt.Errorf("%w: unknown environment %q", errInvalidSpec, spec.ACR.Environment)
		}
		d.cloud = c
	}
	d.audiences = audiencesFor(cfg, d.cloud.ARMAudience)
	switch auth := spec.Auth; {
	case countSet(auth.ManagedIdentity != nil, auth.WorkloadIdentity != nil, auth.ServicePrincipal != nil) != 1:
		return d, fmt.Errorf("%w: exactly one of auth.managedIdentity, auth.workloadIdentity and auth.servicePrincipal must be set", errInvalidSpec)
	case auth.ManagedIdentity != nil:
		mi := auth.ManagedIdentity
		if (mi.ClientID == "") == (mi.ResourceID == "") {
			return d, fmt.Errorf("%w: managedIdentity needs exactly one of clientID and resourceID", errInvalidSpec)
		}
		d.managedIdentity = &azauth.ManagedIdentity{ClientID: mi.ClientID, ResourceID: mi.ResourceID}
	case auth.WorkloadIdentity != nil:
		wi := auth.WorkloadIdentity
		d.workload = &workloadRef{serviceAccount: wi.ServiceAccountName, clientID: wi.ClientID, tenantID: wi.TenantID}
	default:
		sp := auth.ServicePrincipal
		if sp.TenantID == "" || sp.ClientID == "" || sp.SecretRef.Name == "" {
			return d, fmt.Errorf("%w: servicePrincipal needs tenantID, clientID and secretRef.name", errInvalidSpec)
		}
		d.servicePrincipal = &servicePrincipalRef{tenantID: sp.TenantID, clientID: sp.ClientID, secretName: sp.SecretRef.Name}
	}
	if d.server == "" || d.scope == "" || d.targetServiceAccount == "" {
		return d, fmt.Errorf("%w: server, scope and serviceAccountName are required", errInvalidSpec)
	}
	return d, nil
}

func countSet(set ...bool) int {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	return n
}

func (b v1beta2Binding) getStatus() bindingStatus {
	s := b.Status
	return bindingStatus{LastTokenRefreshTime: s.LastTokenRefreshTime, TokenExpirationTime: s.TokenExpirationTime,
		Error: s.Error, ObservedGeneration: s.ObservedGeneration, TokenAudience: s.TokenAudience, Conditions: s.Conditions}
}

func (b v1beta2Binding) setStatus(s bindingStatus) {
	b.Status = acrv1beta2.AcrPullBindingStatus{LastTokenRefreshTime: s.LastTokenRefreshTime,
		TokenExpirationTime: s.TokenExpirationTime, Error: s.Error, ObservedGeneration: s.ObservedGeneration,
		TokenAudience: s.TokenAudience, Conditions: s.Conditions}
}
