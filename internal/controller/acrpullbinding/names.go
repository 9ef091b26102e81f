/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"crypto/sha256"
	"math/big"
	"strings"
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
)

// inputsHash digests the parts of a credential's inputs; it is stored on the secret and compared on every pass.
func inputsHash(parts ...string) string {
	sum := sha256.Sum224([]byte(strings.Join(parts, "\x00")))
	return new(big.Int).SetBytes(sum[:]).Text(36)
}
