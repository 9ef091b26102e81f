/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package secretnames gives a binding's secret its name and its label value: the names msi-acrpull gave, and for a
// binding name too long to fit, a cut name with a hash of the whole, so distinct bindings keep distinct secrets. It
// is a package of its own so that its fuzz target builds without the controller.
package secretnames

import (
	"crypto/sha256"
	"math/big"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// V1beta2Prefix and V1beta1Suffix frame the predictable secret names users list in pod specs.
const (
	V1beta2Prefix = "acr-pull-"
	V1beta1Suffix = "-msi-acrpull-secret"
)

// V1beta2 is the secret name of the acrpull.microsoft.com binding of that name.
func V1beta2(binding string) string { return frame(V1beta2Prefix, binding, "") }

// V1beta1 is the secret name of the msi-acrpull.microsoft.com binding of that name.
func V1beta1(binding string) string { return frame("", binding, V1beta1Suffix) }

// frame frames a binding name into a secret name of at most 253 characters. A name too long to fit is cut and
// given a hash of the whole name, so distinct bindings keep distinct secrets.
func frame(prefix, binding, suffix string) string {
	room := validation.DNS1123SubdomainMaxLength - len(prefix) - len(suffix)
	if len(binding) <= room {
		return prefix + binding + suffix
	}
	digest := shortHash(binding)
	cut := strings.TrimRight(binding[:room-len(digest)-1], ".-")
	return prefix + cut + "-" + digest + suffix
}

// LabelValue is the binding name when it is a valid label value, and otherwise a cut name with a hash.
func LabelValue(binding string) string {
	if len(validation.IsValidLabelValue(binding)) == 0 {
		return binding
	}
	digest := shortHash(binding)
	cut := strings.TrimRight(binding[:validation.LabelValueMaxLength-len(digest)-1], ".-_")
	return cut + "-" + digest
}

// shortHash is the first 10 base-36 digits of the SHA-224 of s, as msi-acrpull computed it.
func shortHash(s string) string {
	sum := sha256.Sum224([]byte(s))
	return new(big.Int).SetBytes(sum[:]).Text(36)[:10]
}
