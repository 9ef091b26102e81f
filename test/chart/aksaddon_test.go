/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"

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

// podIdentity.micNamespace (upstream's nmi.micNamespace) renders --MICNamespace only when set, as upstream's chart;
// the schema takes only a namespace name, so a typo fails the install instead of the agent's start.
func TestMICNamespaceValue(t *testing.T) {
	g := NewWithT(t)
	args := func(flags ...string) []string {
		objs := mustTemplate(t, append([]string{"--set", "podIdentity.enabled=true"}, flags...)...)
		return mustFind[appsv1.DaemonSet](t, objs, "DaemonSet", "acrpull-nmi").Spec.Template.Spec.Containers[0].Args
	}
	g.Expect(args()).NotTo(ContainElement(HavePrefix("--MICNamespace")))
	g.Expect(args("--set", "podIdentity.micNamespace=default")).To(ContainElement("--MICNamespace=default"))
	for _, bad := range []string{"Default", "a/b", "kube system"} {
		_, err := template(releaseName, "--set", "podIdentity.enabled=true", "--set", "podIdentity.micNamespace="+bad)
		g.Expect(err).To(MatchError(ContainSubstring("micNamespace")), bad)
	}
}
