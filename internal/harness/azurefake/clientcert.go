/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// certificateAlgorithms are the signatures Entra ID accepts on certificate assertions: MSAL signs PS256 with an
// x5t#S256 header against Entra ID, and RS256 with x5t against ADFS (and older libraries do it everywhere).
var certificateAlgorithms = []string{"PS256", "RS256"}

// isCertificateAssertion tells a certificate assertion from a federated one. A client authenticating with its own
// certificate is the assertion's issuer (RFC 7523 section 3), while a federated assertion comes from an external
// issuer, a URL: the iss claim alone decides, as it decides for Entra ID.
func isCertificateAssertion(raw, clientID string) bool {
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, claims); err != nil {
		return false
	}
	iss, _ := claims.GetIssuer()
	return iss != "" && strings.EqualFold(iss, clientID)
}

// checkCertificateAssertion verifies a client assertion signed with a certificate registered on the application, as
// Entra ID does for ClientCertificateCredential: the header's thumbprint names the certificate, whose key must
// verify the signature; iss and sub are the client ID; aud is the token endpoint of the tenant asked (v2, or v1,
// which Entra ID also accepts); exp and nbf hold within the leeway.
func (c *Cloud) checkCertificateAssertion(clientID, host, tenant, raw string) *rejection {
	malformed := &rejection{http.StatusBadRequest, "invalid_request", 50027, "JWT token is invalid or malformed."}
	token, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return malformed
	}
	c.mu.RLock()
	registered := slices.Clone(c.certs[strings.ToLower(clientID)])
	c.mu.RUnlock()
	cert, thumbprint := certificateNamedBy(token.Header, registered)
	if cert == nil {
		reason := "[Reason - The key was not found."
		if thumbprint != "" {
			reason += fmt.Sprintf(", Thumbprint of key used by client: '%s'", thumbprint)
		}
		return &rejection{http.StatusUnauthorized, "invalid_client", 700027, fmt.Sprintf(
			"The certificate with identifier used to sign the client assertion is not registered on application. %s, Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '%s'.]",
			reason, clientID)}
	}
	if now := time.Now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return &rejection{http.StatusUnauthorized, "invalid_client", 700027, fmt.Sprintf(
			"Client assertion contains an invalid signature. [Reason - The key used is expired., Thumbprint of key used by client: '%s']", thumbprint)}
	}
	claims := jwt.MapClaims{}
	_, err = jwt.NewParser(jwt.WithValidMethods(certificateAlgorithms), jwt.WithExpirationRequired(), jwt.WithLeeway(assertionLeeway)).
		ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return cert.PublicKey, nil })
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) || errors.Is(err, jwt.ErrTokenUnverifiable):
		return &rejection{http.StatusUnauthorized, "invalid_client", 700027, fmt.Sprintf(
			"Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '%s']", thumbprint)}
	case errors.Is(err, jwt.ErrTokenExpired) || errors.Is(err, jwt.ErrTokenNotValidYet):
		return &rejection{http.StatusUnauthorized, "invalid_client", 700024, fmt.Sprintf(
			"Client assertion is not within its valid time range. Current time: %s.", time.Now().UTC().Format(time.RFC3339))}
	case err != nil:
		return malformed
	}
	iss, _ := claims.GetIssuer()
	sub, _ := claims.GetSubject()
	if !strings.EqualFold(iss, clientID) || !strings.EqualFold(sub, clientID) {
		return &rejection{http.StatusUnauthorized, "invalid_client", 700021,
			"Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials ."}
	}
	audiences, _ := claims.GetAudience()
	endpoints := []string{"https://" + host + "/" + tenant + "/oauth2/v2.0/token", "https://" + host + "/" + tenant + "/oauth2/token"}
	if !slices.ContainsFunc(audiences, func(a string) bool {
		return slices.ContainsFunc(endpoints, func(e string) bool { return strings.EqualFold(a, e) })
	}) {
		return &rejection{http.StatusUnauthorized, "invalid_client", 700023,
			"Client assertion audience claim does not match Realm issuer. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials ."}
	}
	return nil
}

// certificateNamedBy finds the registered certificate whose thumbprint the assertion's header carries: x5t#S256
// (SHA-256 of the DER) first, then x5t (SHA-1). It also returns the thumbprint as Entra ID quotes it, in hex. The
// values are base64url by RFC 7515, but MSAL Go sends standard base64, which Entra ID accepts, so both decode.
func certificateNamedBy(header map[string]any, registered []*x509.Certificate) (*x509.Certificate, string) {
	quoted := ""
	for _, h := range []struct {
		name string
		sum  func([]byte) []byte
	}{
		{"x5t#S256", func(der []byte) []byte { s := sha256.Sum256(der); return s[:] }},
		// x5t is SHA-1 by definition (RFC 7515 section 4.1.7); it only names the certificate, the signature protects.
		{"x5t", func(der []byte) []byte { s := sha1.Sum(der); return s[:] }},
	} {
		value, _ := header[h.name].(string)
		if value == "" {
			continue
		}
		thumbprint, err := decodeThumbprint(value)
		if err != nil {
			continue
		}
		if quoted == "" {
			quoted = fmt.Sprintf("%X", thumbprint)
		}
		for _, cert := range registered {
			if bytes.Equal(h.sum(cert.Raw), thumbprint) {
				return cert, fmt.Sprintf("%X", thumbprint)
			}
		}
	}
	return nil, quoted
}

func decodeThumbprint(value string) ([]byte, error) {
	value = strings.NewReplacer("+", "-", "/", "_").Replace(strings.TrimRight(value, "="))
	return base64.RawURLEncoding.DecodeString(value)
}
