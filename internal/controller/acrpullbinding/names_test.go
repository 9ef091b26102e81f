/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestSecretNamesKeepUpstreamShapes(t *testing.T) {
	if got := secretName(v1beta2SecretPrefix, "pull-binding", ""); got != "acr-pull-pull-binding" {
		t.Errorf("v1beta2 name = %q", got)
	}
	if got := secretName("", "acrpulltest", v1beta1SecretSuffix); got != "acrpulltest-msi-acrpull-secret" {
		t.Errorf("v1beta1 name = %q", got)
	}
}

func TestLongNamesStayValidAndDistinct(t *testing.T) {
	a := strings.Repeat("a", 250) + "x"
	b := strings.Repeat("a", 250) + "y"
	for _, frame := range [][2]string{{v1beta2SecretPrefix, ""}, {"", v1beta1SecretSuffix}} {
		na, nb := secretName(frame[0], a, frame[1]), secretName(frame[0], b, frame[1])
		if errs := validation.IsDNS1123Subdomain(na); len(errs) > 0 {
			t.Errorf("%q invalid: %v", na, errs)
		}
		if na == nb {
			t.Errorf("distinct bindings share secret name %q", na)
		}
	}
	if la, lb := labelValue(a), labelValue(b); la == lb || len(validation.IsValidLabelValue(la)) > 0 {
		t.Errorf("label values %q / %q must be valid and distinct", la, lb)
	}
}

// FuzzSecretName: any binding name the apiserver accepts gives a valid, bounded secret name and label value.
func FuzzSecretName(f *testing.F) {
	for _, seed := range []string{"a", "pull-binding", strings.Repeat("a.", 120) + "b", strings.Repeat("z", 253)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if len(validation.IsDNS1123Subdomain(name)) > 0 {
			t.Skip()
		}
		for _, frame := range [][2]string{{v1beta2SecretPrefix, ""}, {"", v1beta1SecretSuffix}} {
			if errs := validation.IsDNS1123Subdomain(secretName(frame[0], name, frame[1])); len(errs) > 0 {
				t.Fatalf("secret name for %q invalid: %v", name, errs)
			}
		}
		if errs := validation.IsValidLabelValue(labelValue(name)); len(errs) > 0 {
			t.Fatalf("label value for %q invalid: %v", name, errs)
		}
	})
}
