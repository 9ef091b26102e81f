/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// entraKeyID names the Entra ID signing key in token headers and in the published key set.
const entraKeyID = "fake-entra-key"

// tokenLeeway is the clock skew tolerated on the fake's own tokens when they come back.
const tokenLeeway = 5 * time.Second

// access is one entry of a registry token's access claim (the Docker distribution token format).
type access struct {
	Type    string   `json:"type"`
	Name    string   `json:"name"`
	Actions []string `json:"actions"`
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newGUID is a random GUID, the shape of Azure's trace and correlation IDs.
func newGUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// issueEntra signs an Entra ID access token (v1 shape, as issued for Azure resources) for an identity in one of its
// tenants and an audience (any resource: Entra ID issues for whatever the scope names). Issuer, tid and the
// service principal's object ID are the tenant's, so a multi-tenant application gets a different token per tenant.
func (c *Cloud) issueEntra(id Identity, tenant, audience string, noExp bool) (string, time.Time, error) {
	now := time.Now()
	exp := now.Add(c.lifetime(EntraToken))
	principal := id.principalIn(tenant)
	claims := jwt.MapClaims{
		"aud": audience, "iss": "https://sts.windows.net/" + tenant + "/", "tid": tenant,
		"oid": principal, "sub": principal, "appid": id.ClientID, "azp": id.ClientID, "appidacr": "2",
		"idtyp": "app", "iat": now.Unix(), "nbf": now.Unix(), "uti": newID(), "ver": "1.0",
	}
	if !noExp {
		claims["exp"] = exp.Unix()
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = entraKeyID
	s, err := t.SignedString(c.entraKey)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("signing an Entra ID token: %w", err)
	}
	return s, exp, nil
}

// issueACR signs a registry token: a refresh token (grant_type refresh_token) or an access token with access
// entries. It carries the signing certificate (x5c) and its RFC 7638 thumbprint (kid), so a Docker distribution
// registry verifies it against its rootcertbundle.
func (c *Cloud) issueACR(ep Endpoint, host string, id Identity, grants []access, refresh, noExp bool) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"jti": newGUID(), "sub": id.PrincipalID, "iss": ACRIssuer, "aud": host, "iat": now.Unix(), "nbf": now.Unix(),
		"version": "1.0", "tenant": id.TenantID, "appid": id.ClientID, "oid": id.PrincipalID,
	}
	if !noExp {
		claims["exp"] = now.Add(c.lifetime(ep)).Unix()
	}
	if refresh {
		claims["grant_type"] = "refresh_token"
	} else {
		if grants == nil {
			grants = []access{}
		}
		claims["access"] = grants
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["x5c"] = []string{base64.StdEncoding.EncodeToString(c.acrCert)}
	t.Header["kid"] = rfc7638Thumbprint(&c.acrKey.PublicKey)
	s, err := t.SignedString(c.acrKey)
	if err != nil {
		return "", fmt.Errorf("signing a registry token: %w", err)
	}
	return s, nil
}

// parseACR verifies a token this fake issued for host: signature, issuer, audience and lifetime.
func (c *Cloud) parseACR(raw, host string) (jwt.MapClaims, bool) {
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(ACRIssuer), jwt.WithAudience(host),
		jwt.WithExpirationRequired(), jwt.WithLeeway(tokenLeeway)).
		ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return &c.acrKey.PublicKey, nil })
	return claims, err == nil
}

// parseEntra verifies an Entra token this fake issued.
func (c *Cloud) parseEntra(raw string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithLeeway(tokenLeeway), jwt.WithExpirationRequired()).
		ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return &c.entraKey.PublicKey, nil })
	return claims, err
}

// jsonWebKey is the public part of an RSA key as a JSON Web Key.
type jsonWebKey struct {
	KeyType string `json:"kty"`
	Use     string `json:"use,omitempty"`
	KeyID   string `json:"kid,omitempty"`
	N       string `json:"n"`
	E       string `json:"e"`
}

// jwksOf is the key set that publishes one RSA key, as Entra ID's discovery keys endpoint does.
func jwksOf(kid string, key *rsa.PublicKey) map[string][]jsonWebKey {
	return map[string][]jsonWebKey{"keys": {{
		KeyType: "RSA", Use: "sig", KeyID: kid,
		N: base64.RawURLEncoding.EncodeToString(key.N.Bytes()),
		E: base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}}
}

// rfc7638Thumbprint is the JWK thumbprint Docker distribution indexes its trusted keys by.
func rfc7638Thumbprint(key *rsa.PublicKey) string {
	e := base64.RawURLEncoding.EncodeToString(big.NewInt(int64(key.E)).Bytes())
	n := base64.RawURLEncoding.EncodeToString(key.N.Bytes())
	sum := sha256.Sum256([]byte(`{"e":"` + e + `","kty":"RSA","n":"` + n + `"}`))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
