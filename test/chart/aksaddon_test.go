/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"testing"

	. "github.com/onsi/gomega"

	aadv1 "github.com/acrpull/acrpull/api/aadpodidentity/v1"
)

// Upstream's chart renders AzurePodIdentityException aks-addon-exception in kube-system for pods labelled
// kubernetes.azure.com/managedby: aks, so AKS add-ons reach the node's IMDS unintercepted. podIdentity.aksAddonException
// (default true) renders the same object; false renders none, and nothing renders without podIdentity.enabled.
func TestAKSAddonExceptionRendersUpstreamsObject(t *testing.T) {
	g := NewWithT(t)
	objs := mustTemplate(t, "--set", "podIdentity.enabled=true")
	ex := mustFind[aadv1.AzurePodIdentityException](t, objs, "AzurePodIdentityException", "aks-addon-exception")
	g.Expect(ex.Namespace).To(Equal("kube-system"))
	g.Expect(ex.Spec.PodLabels).To(Equal(map[string]string{"kubernetes.azure.com/managedby": "aks"}))
	// A hook, like the chart's other exceptions: on a fresh install the CRD must exist first.
	g.Expect(ex.Annotations).To(HaveKeyWithValue("helm.sh/hook", "post-install,post-upgrade"))

	off := mustTemplate(t, "--set", "podIdentity.enabled=true", "--set", "podIdentity.aksAddonException=false")
	g.Expect(find(off, "AzurePodIdentityException", "aks-addon-exception")).To(BeNil())
	g.Expect(find(mustTemplate(t), "AzurePodIdentityException", "aks-addon-exception")).To(BeNil())
}
