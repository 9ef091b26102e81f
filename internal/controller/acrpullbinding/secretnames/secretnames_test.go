/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package secretnames

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func TestSecretNamesKeepUpstreamShapes(t *testing.T) {
	if got := V1beta2("pull-binding"); got != "acr-pull-pull-binding" {
		t.Errorf("v1beta2 name = %q", got)
	}
	if got := V1beta1("acrpulltest"); got != "acrpulltest-msi-acrpull-secret" {
		t.Errorf("v1beta1 name = %q", got)
	}
}

func TestLongNamesStayValidAndDistinct(t *testing.T) {
	a := strings.Repeat("a", 250) + "x"
	b := strings.Repeat("a", 250) + "y"
	for _, name := range []func(string) string{V1beta2, V1beta1} {
		na, nb := name(a), name(b)
		if errs := validation.IsDNS1123Subdomain(na); len(errs) > 0 {
			t.Errorf("%q invalid: %v", na, errs)
		}
		if na == nb {
			t.Errorf("distinct bindings share secret name %q", na)
		}
	}
	if la, lb := LabelValue(a), LabelValue(b); la == lb || len(validation.IsValidLabelValue(la)) > 0 {
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
		for _, secretName := range []func(string) string{V1beta2, V1beta1} {
			if errs := validation.IsDNS1123Subdomain(secretName(name)); len(errs) > 0 {
				t.Fatalf("secret name for %q invalid: %v", name, errs)
			}
		}
		if errs := validation.IsValidLabelValue(LabelValue(name)); len(errs) > 0 {
			t.Fatalf("label value for %q invalid: %v", name, errs)
		}
	})
}
