/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package v1beta2 holds the acrpull.microsoft.com/v1beta2 API: the current AcrPullBinding.
// +kubebuilder:object:generate=true
// +groupName=acrpull.microsoft.com
package v1beta2

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API, as msi-acrpull's v1beta2 clients know it.
	GroupVersion = schema.GroupVersion{Group: "acrpull.microsoft.com", Version: "v1beta2"}

	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
