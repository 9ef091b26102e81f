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
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "msi-acrpull.microsoft.com", Version: "v1beta1"}

	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
