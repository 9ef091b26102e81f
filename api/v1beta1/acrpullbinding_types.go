/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AcrPullBindingSpec is msi-acrpull's spec. Empty fields fall back to the controller's defaults (ACR_SERVER,
// MANAGED_IDENTITY_CLIENT_ID, MANAGED_IDENTITY_RESOURCE_ID); a value in the spec always wins.
type AcrPullBindingSpec struct {
	// AcrServer is the registry's host name; empty means the controller default.
	AcrServer string `json:"acrServer"`

	// Scope is the registry scope of the token; empty gives the registry-wide refresh token, as msi-acrpull did.
	// +optional
	Scope string `json:"scope,omitempty"`

	// ManagedIdentityClientID names the identity by client ID; it wins over ManagedIdentityResourceID.
	// +optional
	ManagedIdentityClientID string `json:"managedIdentityClientID,omitempty"`

	// ManagedIdentityResourceID names the identity by ARM resource ID.
	// +optional
	ManagedIdentityResourceID string `json:"managedIdentityResourceID,omitempty"`

	// ServiceAccountName receives the pull secret.
	// +optional
	// +kubebuilder:default=default
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
}

// AcrPullBindingStatus is msi-acrpull's status, with observedGeneration and conditions added.
type AcrPullBindingStatus struct {
	// LastTokenRefreshTime is when the token in the pull secret was issued.
	// +optional
	LastTokenRefreshTime *metav1.Time `json:"lastTokenRefreshTime,omitempty"`

	// TokenExpirationTime is when the token in the pull secret expires.
	// +optional
	TokenExpirationTime *metav1.Time `json:"tokenExpirationTime,omitempty"`

	// Error is the last error.
	// +optional
	Error string `json:"error,omitempty"`

	// ObservedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// TokenAudience is the Entra ID token audience the registry accepted.
	// +optional
	TokenAudience string `json:"tokenAudience,omitempty"`

	// Conditions, with the same types and reasons as v1beta2.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AcrPullBinding is msi-acrpull's binding of a managed identity to a registry and a service account.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:resource:categories=acrpull
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=`.spec.acrServer`
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.serviceAccountName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Verified",type=string,JSONPath=`.status.conditions[?(@.type=="Verified")].reason`
// +kubebuilder:printcolumn:name="Expiration",type=string,JSONPath=`.status.tokenExpirationTime`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AcrPullBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AcrPullBindingSpec   `json:"spec,omitempty"`
	Status AcrPullBindingStatus `json:"status,omitempty"`
}

// AcrPullBindingList is a list of AcrPullBindings.
// +kubebuilder:object:root=true
type AcrPullBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AcrPullBinding `json:"items"`
}
