/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package v1 holds the aadpodidentity.k8s.io/v1 API of AAD Pod Identity, field for field, so that clusters that run
// it keep their AzureIdentity, AzureIdentityBinding, AzurePodIdentityException and AzureAssignedIdentity objects
// unchanged when acrpull's node agent takes over.
//
// Upstream's quirks are kept where objects depend on them: specs and statuses embed an ObjectMeta, the binding's
// selector is a plain string compared with the pod label `aadpodidbinding`, the identity type is an integer, and
// there is no status subresource (the assignment controller patches status with the object). What is new is
// validation: a malformed resource ID or a missing secret reference is refused at admission with a message, where
// upstream dropped such identities silently.
// +kubebuilder:object:generate=true
// +groupName=aadpodidentity.k8s.io
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version AAD Pod Identity's clients know.
	GroupVersion = schema.GroupVersion{Group: "aadpodidentity.k8s.io", Version: "v1"}

	// SchemeBuilder registers this package's types with a runtime.Scheme. It is apimachinery's, so that the API
	// package imports nothing beyond apimachinery.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the package's types and the group version's meta types (list and delete options).
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &AzureIdentity{}, &AzureIdentityList{},
		&AzureIdentityBinding{}, &AzureIdentityBindingList{},
		&AzureAssignedIdentity{}, &AzureAssignedIdentityList{},
		&AzurePodIdentityException{}, &AzurePodIdentityExceptionList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
