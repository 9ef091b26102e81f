/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"crypto"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// serveEntra answers OIDC discovery and the v2 token endpoint of an authority host.
func (c *Cloud) serveEntra(w http.ResponseWriter, r *http.Request, host string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration":
		if _, ok := c.endpoint(EntraDiscovery, w); !ok {
			return
		}
		base := "https://" + host + "/" + parts[0]
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer": base + "/v2.0", "token_endpoint": base + "/oauth2/v2.0/token",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize", "jwks_uri": "https://" + host + "/" + parts[0] + "/discovery/v2.0/keys",
			"response_types_supported": []string{"code", "token"}, "subject_types_supported": []string{"pairwise"},
			"id_token_signing_alg_values_supported": []string{"RS256"}, "tenant_region_scope": "WW",
		})
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token" && r.Method == http.MethodPost:
		f, ok := c.endpoint(EntraToken, w)
		if !ok {
			return
		}
		c.entraToken(w, r, parts[0], f)
	default:
		http.NotFound(w, r)
	}
}

// aadError writes an Entra ID error body with its AADSTS code.
func aadError(w http.ResponseWriter, status int, kind string, code int, description string) {
	writeJSON(w, status, map[string]any{
		"error":             kind,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Timestamp: %s", code, description, newID(), time.Now().UTC().Format(time.RFC3339)),
		"error_codes":       []int{code},
		"timestamp":         time.Now().UTC().Format("2006-01-02 15:04:05Z"),
		"trace_id":          newID(),
		"correlation_id":    newID(),
	})
}

func (c *Cloud) entraToken(w http.ResponseWriter, r *http.Request, tenant string, f Fault) {
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain form parameters.")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+gt+"'.")
		return
	}
	clientID := strings.ToLower(r.PostForm.Get("client_id"))
	c.mu.RLock()
	id, known := c.identities[clientID]
	c.mu.RUnlock()
	if !known || !strings.EqualFold(id.TenantID, tenant) {
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, tenant))
		return
	}
	switch {
	case r.PostForm.Get("client_assertion") != "":
		if r.PostForm.Get("client_assertion_type") != clientAssertionType {
			aadError(w, http.StatusBadRequest, "invalid_request", 50027, "Invalid client_assertion_type.")
			return
		}
		if status, code, msg := c.checkAssertion(clientID, r.PostForm.Get("client_assertion")); status != 0 {
			aadError(w, status, "invalid_client", code, msg)
			return
		}
	case r.PostForm.Get("client_secret") != "":
		c.mu.RLock()
		secret := c.secrets[clientID]
		c.mu.RUnlock()
		if secret == "" || secret != r.PostForm.Get("client_secret") {
			aadError(w, http.StatusUnauthorized, "invalid_client", 7000215, "Invalid client secret provided.")
			return
		}
	default:
		aadError(w, http.StatusBadRequest, "invalid_client", 7000218, "The request body must contain 'client_assertion' or 'client_secret'.")
		return
	}
	audience := audienceOfScope(r.PostForm.Get("scope"))
	if audience == "" {
		aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, "The provided value for scope is not valid.")
		return
	}
	token, exp, err := c.issueEntra(id, audience, f.NoExp)
	if err != nil {
		aadError(w, http.StatusInternalServerError, "server_error", 50000, "signing failed")
		return
	}
	secs := int(time.Until(exp).Seconds())
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token})
}

// checkAssertion verifies a service-account token presented as a client assertion, as Entra ID does for
// workload identity federation: signature by the issuer's keys, time validity, and a federated credential on the
// identity matching issuer, subject and audience exactly.
func (c *Cloud) checkAssertion(clientID, raw string) (status, code int, msg string) {
	unverified := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, unverified); err != nil {
		return http.StatusBadRequest, 50027, "JWT token is invalid or malformed."
	}
	issuer, _ := unverified.GetIssuer()
	c.mu.RLock()
	keys := slices.Clone(c.issuers[issuer])
	creds := slices.Clone(c.federated[clientID])
	c.mu.RUnlock()
	if len(keys) == 0 {
		return http.StatusUnauthorized, 700211, fmt.Sprintf("No matching federated identity record found for presented assertion issuer '%s'.", issuer)
	}
	claims := jwt.MapClaims{}
	var verr error
	for _, key := range keys {
		claims = jwt.MapClaims{}
		_, verr = jwt.NewParser(jwt.WithValidMethods([]string{"RS256", "ES256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(5*time.Second)).
			ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return key.(crypto.PublicKey), nil })
		if verr == nil || !errors.Is(verr, jwt.ErrTokenSignatureInvalid) {
			break
		}
	}
	switch {
	case errors.Is(verr, jwt.ErrTokenExpired) || errors.Is(verr, jwt.ErrTokenNotValidYet):
		return http.StatusBadRequest, 700024, "Client assertion is not within its valid time range."
	case errors.Is(verr, jwt.ErrTokenSignatureInvalid):
		return http.StatusUnauthorized, 50013, "Assertion failed signature validation."
	case verr != nil:
		return http.StatusBadRequest, 50027, "JWT token is invalid or malformed."
	}
	subject, _ := claims.GetSubject()
	audiences, _ := claims.GetAudience()
	for _, fc := range creds {
		if fc.Issuer == issuer && fc.Subject == subject && slices.ContainsFunc(audiences, func(a string) bool { return slices.Contains(fc.Audiences, a) }) {
			return 0, 0, ""
		}
	}
	return http.StatusUnauthorized, 70021, fmt.Sprintf(
		"No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'.",
		issuer, subject, strings.Join(audiences, ","))
}

// serveIMDS answers the instance metadata service's managed identity endpoint for identities assigned to "this VM".
func (c *Cloud) serveIMDS(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.URL.Path, "/metadata/identity/oauth2/token") {
		http.NotFound(w, r)
		return
	}
	f, ok := c.endpoint(IMDSToken, w)
	if !ok {
		return
	}
	if r.Header.Get("Metadata") != "true" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Required metadata header not specified"})
		return
	}
	q := r.URL.Query()
	resource := audienceOfScope(q.Get("resource"))
	if resource == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Required query variable 'resource' is missing"})
		return
	}
	id, found := c.assignedIdentity(q.Get("client_id"), firstNonEmpty(q.Get("msi_res_id"), q.Get("mi_res_id")), q.Get("object_id"))
	if !found {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "Identity not found"})
		return
	}
	token, exp, err := c.issueEntra(id, resource, f.NoExp)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	now := time.Now()
	secs := strconv.Itoa(int(exp.Sub(now).Seconds()))
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": token, "client_id": id.ClientID, "expires_in": secs, "ext_expires_in": secs,
		"expires_on": strconv.FormatInt(exp.Unix(), 10), "not_before": strconv.FormatInt(now.Unix(), 10),
		"resource": resource, "token_type": "Bearer",
	})
}

// assignedIdentity finds the identity IMDS would answer for: the one named, if assigned; with no name, the only one
// assigned.
func (c *Cloud) assignedIdentity(clientID, resourceID, objectID string) (Identity, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var candidates []Identity
	for _, id := range c.identities {
		if !id.AssignedToVM {
			continue
		}
		switch {
		case clientID != "" && strings.EqualFold(id.ClientID, clientID),
			resourceID != "" && strings.EqualFold(id.ResourceID, resourceID),
			objectID != "" && strings.EqualFold(id.PrincipalID, objectID):
			return id, true
		case clientID == "" && resourceID == "" && objectID == "":
			candidates = append(candidates, id)
		}
	}
	if len(candidates) == 1 {
		return candidates[0], true
	}
	return Identity{}, false
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
