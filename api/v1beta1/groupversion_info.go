/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package v1beta1 holds the msi-acrpull.microsoft.com/v1beta1 API: msi-acrpull's original AcrPullBinding, served
// unchanged so existing manifests keep working. It is a separate API group upstream, so there is no conversion.
// +kubebuilder:object:generate=true
// +groupName=msi-acrpull.microsoft.com
package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "msi-acrpull.microsoft.com", Version: "v1beta1"}

	// SchemeBuilder registers this package's types with a runtime.Scheme. It is apimachinery's, so that the API
	// package imports nothing beyond apimachinery.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// addKnownTypes registers the package's types and the group version's meta types (list and delete options).
func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &AcrPullBinding{}, &AcrPullBindingList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
