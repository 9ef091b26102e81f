/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package scheme is the one runtime.Scheme of acrpull's programs: the built-in kinds, both AcrPullBinding API groups and
// the AAD Pod Identity API. It is its own package so the node agent and the assignment controller can share it without
// linking the binding controller.
package scheme

import (
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
	acrv1beta1 "github.com/acrpull/acrpull/api/v1beta1"
	acrv1beta2 "github.com/acrpull/acrpull/api/v1beta2"
)

// New knows the built-in kinds, both AcrPullBinding API groups and the AAD Pod Identity API.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(acrv1beta1.AddToScheme(s))
	utilruntime.Must(acrv1beta2.AddToScheme(s))
	utilruntime.Must(aadv1.AddToScheme(s))
	return s
}
