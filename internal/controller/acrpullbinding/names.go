/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"crypto/sha256"
	"math/big"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Names msi-acrpull gave to the objects it manages; acrpull keeps them so existing clusters and policies keep working.
const (
	// Finalizer lets the controller unreference and delete the secret before a binding goes away.
	Finalizer = "msi-acrpull.microsoft.com"
	// BindingLabel marks secrets the controller manages; its cache only holds secrets with this label.
	BindingLabel = "acr.microsoft.com/binding"
	// ExpiryAnnotation holds the token's expiry (RFC 3339).
	ExpiryAnnotation = "acr.microsoft.com/token.expiry"
	// RefreshAnnotation holds when the token was issued (RFC 3339).
	RefreshAnnotation = "acr.microsoft.com/token.refresh"
	// InputsAnnotation holds a hash of everything the token was minted from; a change means a new token.
	InputsAnnotation = "acr.microsoft.com/token.inputs"
	// AudienceAnnotation holds the Entra ID audience the token was issued for (acrpull's own; status reports it).
	AudienceAnnotation = "acr.microsoft.com/token.audience"

	// v1beta2SecretPrefix and v1beta1SecretSuffix frame the predictable secret names users list in pod specs.
	v1beta2SecretPrefix = "acr-pull-"
	v1beta1SecretSuffix = "-msi-acrpull-secret"
)

// secretName frames a binding name into a secret name of at most 253 characters. A name too long to fit is cut and
// given a hash of the whole name, so distinct bindings keep distinct secrets.
func secretName(prefix, binding, suffix string) string {
	room := validation.DNS1123SubdomainMaxLength - len(prefix) - len(suffix)
	if len(binding) <= room {
		return prefix + binding + suffix
	}
	digest := shortHash(binding)
	cut := strings.TrimRight(binding[:room-len(digest)-1], ".-")
	return prefix + cut + "-" + digest + suffix
}

// labelValue is the binding name when it is a valid label value, and otherwise a cut name with a hash.
func labelValue(binding string) string {
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

// inputsHash digests the parts of a credential's inputs; it is stored on the secret and compared on every pass.
func inputsHash(parts ...string) string {
	sum := sha256.Sum224([]byte(strings.Join(parts, "\x00")))
	return new(big.Int).SetBytes(sum[:]).Text(36)
}
