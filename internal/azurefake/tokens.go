/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const entraKeyID = "fake-entra-key"

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

// issueEntra signs an Entra ID access token for an identity and audience.
func (c *Cloud) issueEntra(id Identity, audience string, noExp bool) (string, time.Time, error) {
	now := time.Now()
	exp := now.Add(c.lifetime(EntraToken))
	claims := jwt.MapClaims{
		"aud": audience, "iss": "https://sts.windows.net/" + id.TenantID + "/", "tid": id.TenantID,
		"oid": id.PrincipalID, "sub": id.PrincipalID, "appid": id.ClientID, "azp": id.ClientID,
		"iat": now.Unix(), "nbf": now.Unix(), "uti": newID(), "ver": "1.0",
	}
	if !noExp {
		claims["exp"] = exp.Unix()
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	t.Header["kid"] = entraKeyID
	s, err := t.SignedString(c.entraKey)
	return s, exp, err
}

// issueACR signs a registry token: a refresh token (grant_type refresh_token) or an access token with access
// entries. It carries the signing certificate (x5c) so the registry verifies it against its rootcertbundle.
func (c *Cloud) issueACR(ep Endpoint, host string, id Identity, grants []access, refresh, noExp bool) (string, error) {
	now := time.Now()
	claims := jwt.MapClaims{
		"jti": newID(), "sub": id.PrincipalID, "iss": ACRIssuer, "aud": host, "iat": now.Unix(), "nbf": now.Unix(),
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
	return t.SignedString(c.acrKey)
}

// parseACR verifies a token this fake issued for host.
func (c *Cloud) parseACR(raw, host string) (jwt.MapClaims, bool) {
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithIssuer(ACRIssuer), jwt.WithAudience(host),
		jwt.WithLeeway(5*time.Second)).ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return &c.acrKey.PublicKey, nil })
	return claims, err == nil
}

// parseEntra verifies an Entra token this fake issued.
func (c *Cloud) parseEntra(raw string) (jwt.MapClaims, error) {
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"RS256"}), jwt.WithLeeway(5*time.Second), jwt.WithExpirationRequired()).
		ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return &c.entraKey.PublicKey, nil })
	return claims, err
}

// audienceOfScope turns an OAuth2 scope ("<resource>/.default") into the token audience.
func audienceOfScope(scope string) string {
	return strings.TrimSuffix(strings.Fields(scope + " ")[0], "/.default")
}
