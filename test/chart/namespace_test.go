/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"strings"
	"testing"
)

// clusterScopedKinds are the kinds the chart renders without a namespace; every other object is namespaced.
var clusterScopedKinds = map[string]bool{
	"Namespace": true, "CustomResourceDefinition": true, "ClusterRole": true, "ClusterRoleBinding": true,
	"ValidatingAdmissionPolicy": true, "ValidatingAdmissionPolicyBinding": true,
	"MutatingAdmissionPolicy": true, "MutatingAdmissionPolicyBinding": true,
}

// fixedNamespaces are objects whose namespace is the cluster's, not the release's: upstream's AKS add-on exception
// applies only in kube-system, where the add-ons run.
var fixedNamespaces = map[string]string{"AzurePodIdentityException/aks-addon-exception": "kube-system"}

// `helm install -n platform` puts every namespaced object in platform, and every policy and binding that names the
// chart's service accounts names them there; the value `namespace` overrides the release namespace when set.
func TestReleaseNamespaceIsHonoured(t *testing.T) {
	everything := []string{"--set", "podIdentity.enabled=true", "--set", "podIdentity.mic.enabled=true", "--set", "createNamespace=true",
		"--set", "monitoring.create=true", "--set", "podIdentity.netRawPolicy.validationActions={Warn}"}
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"release namespace", []string{"--namespace", "platform"}, "platform"},
		{"explicit override", []string{"--namespace", "platform", "--set", "namespace=elsewhere"}, "elsewhere"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := helm(append(append([]string{"template", "r", chartDir, "--kube-version", kubeVersion}, tc.flags...), everything...)...)
			if err != nil {
				t.Fatal(err)
			}
			for _, obj := range mustDecode(t, out) {
				ns, kind := obj.GetNamespace(), obj.GetKind()
				if fixed, ok := fixedNamespaces[kind+"/"+obj.GetName()]; ok {
					if ns != fixed {
						t.Errorf("%s %s is in namespace %q, want %q", kind, obj.GetName(), ns, fixed)
					}
					continue
				}
				switch {
				case clusterScopedKinds[kind] && ns != "":
					t.Errorf("%s %s is cluster-scoped but carries namespace %q", kind, obj.GetName(), ns)
				case !clusterScopedKinds[kind] && ns != tc.want:
					t.Errorf("%s %s is in namespace %q, want %q", kind, obj.GetName(), ns, tc.want)
				case kind == "Namespace" && obj.GetName() != tc.want:
					t.Errorf("the chart renders Namespace %q, want %q", obj.GetName(), tc.want)
				}
			}
			for _, other := range []string{"acrpull", "platform", "elsewhere"} {
				if other != tc.want && strings.Contains(out, "system:serviceaccount:"+other+":") {
					t.Errorf("a policy or binding names service accounts of namespace %q, want only %q", other, tc.want)
				}
			}
			if !strings.Contains(out, "system:serviceaccount:"+tc.want+":acrpull") {
				t.Errorf("no policy names the controller as system:serviceaccount:%s:acrpull", tc.want)
			}
		})
	}
}
