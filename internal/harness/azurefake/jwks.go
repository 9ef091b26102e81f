/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
)

// ParseJWKS reads the signing keys of a JSON Web Key Set (RSA and EC P-256/384/521), the form an OIDC issuer such
// as a Kubernetes API server publishes its service-account keys in. Keys for encryption are skipped.
func ParseJWKS(data []byte) ([]crypto.PublicKey, error) {
	var set struct {
		Keys []struct {
			KeyType string `json:"kty"`
			Use     string `json:"use"`
			N       string `json:"n"`
			E       string `json:"e"`
			Curve   string `json:"crv"`
			X       string `json:"x"`
			Y       string `json:"y"`
		} `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("parsing the key set: %w", err)
	}
	var keys []crypto.PublicKey
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.KeyType {
		case "RSA":
			n, err1 := decodeBigInt(k.N)
			e, err2 := decodeBigInt(k.E)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("key %d: bad RSA parameters: %w", i, err)
			}
			if !e.IsInt64() || e.Int64() < 3 {
				return nil, fmt.Errorf("key %d: bad RSA exponent", i)
			}
			keys = append(keys, &rsa.PublicKey{N: n, E: int(e.Int64())})
		case "EC":
			curve, ok := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[k.Curve]
			if !ok {
				return nil, fmt.Errorf("key %d: unsupported curve %q", i, k.Curve)
			}
			x, err1 := decodeBigInt(k.X)
			y, err2 := decodeBigInt(k.Y)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("key %d: bad EC parameters: %w", i, err)
			}
			size := (curve.Params().BitSize + 7) / 8
			if len(x.Bytes()) > size || len(y.Bytes()) > size {
				return nil, fmt.Errorf("key %d: coordinates too long for %s", i, k.Curve)
			}
			point := append([]byte{4}, append(x.FillBytes(make([]byte, size)), y.FillBytes(make([]byte, size))...)...)
			key, err := ecdsa.ParseUncompressedPublicKey(curve, point)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", i, err)
			}
			keys = append(keys, key)
		default:
			return nil, fmt.Errorf("key %d: unsupported key type %q", i, k.KeyType)
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("the key set holds no signing key")
	}
	return keys, nil
}

func decodeBigInt(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("not base64url: %q", s)
	}
	return new(big.Int).SetBytes(b), nil
}
