/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package manager

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// NewScheme knows the built-in kinds, both AcrPullBinding API groups and the AAD Pod Identity API.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(acrv1beta1.AddToScheme(s))
	utilruntime.Must(acrv1beta2.AddToScheme(s))
	utilruntime.Must(aadv1.AddToScheme(s))
	return s
}
