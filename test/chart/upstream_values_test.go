/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package chart_test

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
)

// msi-acrpull's chart took the image as one string; a values file kept from it still installs, with that image for
// every workload and the default pull policy.
func TestUpstreamImageStringIsAccepted(t *testing.T) {
	const ref = "myacr.azurecr.io/acrpull/acrpull@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct{ values, want string }{
		{"image: myacr.azurecr.io/msi-acrpull:v0.1.24\n", "myacr.azurecr.io/msi-acrpull:v0.1.24"},
		{"image: " + ref + "\n", ref},
	} {
		objs := mustTemplate(t, "-f", valuesFile(t, tc.values+"podIdentity: {enabled: true, mic: {enabled: true}}\n"))
		for _, w := range []struct{ kind, name string }{{"Deployment", "acrpull"}, {"DaemonSet", "acrpull-nmi"}, {"Deployment", "acrpull-mic"}} {
			var containers []string
			var policies []string
			switch w.kind {
			case "Deployment":
				d := mustFind[appsv1.Deployment](t, objs, w.kind, w.name)
				for _, c := range d.Spec.Template.Spec.Containers {
					containers, policies = append(containers, c.Image), append(policies, string(c.ImagePullPolicy))
				}
			case "DaemonSet":
				d := mustFind[appsv1.DaemonSet](t, objs, w.kind, w.name)
				for _, c := range d.Spec.Template.Spec.Containers {
					containers, policies = append(containers, c.Image), append(policies, string(c.ImagePullPolicy))
				}
			}
			if len(containers) != 1 || containers[0] != tc.want || policies[0] != "IfNotPresent" {
				t.Errorf("%s %s: images %v, pull policies %v; want %s, IfNotPresent", w.kind, w.name, containers, policies, tc.want)
			}
		}
	}
}
