/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLeeway is the clock skew tolerated on a client assertion's exp and nbf.
const assertionLeeway = 30 * time.Second

// serveEntra answers OIDC discovery, the signing keys, instance discovery and the v2 token endpoint of an authority
// host.
//
// Statuses follow what Entra ID sends: 400 for requests it cannot act on (unknown tenant AADSTS90002, unknown
// application or one not provisioned in the tenant AADSTS700016, malformed assertion AADSTS50027, and AADSTS70021
// when no federated credential matches the assertion's issuer, subject and audience, sent as invalid_request), 401
// invalid_client when the client's credential itself fails (untrusted issuer AADSTS700211, expired or not yet valid
// assertion AADSTS700024, bad signature AADSTS50013, wrong secret AADSTS7000215, and for certificate assertions:
// unregistered, expired or mismatched certificate AADSTS700027, iss or sub not the client ID AADSTS700021, aud not
// the tenant's token endpoint AADSTS700023).
func (c *Cloud) serveEntra(w http.ResponseWriter, r *http.Request, host string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	tenant := parts[0]
	switch {
	case r.Method == http.MethodGet && slices.Equal(parts[1:], []string{"v2.0", ".well-known", "openid-configuration"}):
		if _, ok := c.endpoint(EntraDiscovery, w, r); ok {
			c.openIDConfiguration(w, host, tenant)
		}
	case r.Method == http.MethodGet && slices.Equal(parts[1:], []string{"discovery", "v2.0", "keys"}):
		if _, ok := c.endpoint(EntraDiscovery, w, r); ok {
			writeJSON(w, http.StatusOK, jwksOf(entraKeyID, &c.entraKey.PublicKey))
		}
	case r.Method == http.MethodGet && strings.EqualFold(tenant, "common") && slices.Equal(parts[1:], []string{"discovery", "instance"}):
		if _, ok := c.endpoint(EntraDiscovery, w, r); ok {
			instanceDiscovery(w, r)
		}
	case r.Method == http.MethodPost && slices.Equal(parts[1:], []string{"oauth2", "v2.0", "token"}):
		c.countTenantToken(tenant)
		if f, ok := c.endpoint(EntraToken, w, r); ok {
			c.entraToken(w, r, host, tenant, f)
		}
	default:
		http.NotFound(w, r)
	}
}

// publicAuthorityHosts are the authority hosts Entra ID's instance discovery vouches for. Hosts added with
// AddAuthorityHost belong to clouds public Entra ID does not know (air-gapped ones), so, as for real, clients there
// must turn instance discovery off.
var publicAuthorityHosts = map[string]bool{
	"login.microsoftonline.com": true, "login.windows.net": true, "login.microsoft.com": true, "sts.windows.net": true,
	"login.microsoftonline.us": true, "login.usgovcloudapi.net": true, "login.chinacloudapi.cn": true,
}

// instanceDiscovery answers MSAL's authority validation (GET /common/discovery/instance?authorization_endpoint=...),
// which it sends before using an authority host it does not trust by name.
func instanceDiscovery(w http.ResponseWriter, r *http.Request) {
	endpoint, err := url.Parse(r.URL.Query().Get("authorization_endpoint"))
	authorityHost := ""
	if err == nil {
		authorityHost = strings.ToLower(endpoint.Hostname())
	}
	if !publicAuthorityHosts[authorityHost] {
		aadError(w, http.StatusBadRequest, "invalid_instance", 50049, "Unknown or invalid instance.")
		return
	}
	tenant, _, _ := strings.Cut(strings.TrimPrefix(endpoint.Path, "/"), "/")
	writeJSON(w, http.StatusOK, map[string]any{
		"tenant_discovery_endpoint": "https://" + authorityHost + "/" + tenant + "/v2.0/.well-known/openid-configuration",
		"api-version":               "1.1",
		"metadata": []map[string]any{{
			"preferred_network": authorityHost, "preferred_cache": authorityHost, "aliases": []string{authorityHost},
		}},
	})
}

// isWellKnownTenant reports the tenant aliases discovery answers for without a directory behind them.
func isWellKnownTenant(tenant string) bool {
	switch strings.ToLower(tenant) {
	case "common", "organizations", "consumers":
		return true
	}
	return false
}

// openIDConfiguration is the discovery document MSAL reads before its first token request. Issuer and endpoints use
// the requested host, which MSAL checks against the authority it was configured with.
func (c *Cloud) openIDConfiguration(w http.ResponseWriter, host, tenant string) {
	if !isWellKnownTenant(tenant) && !c.knownTenant(tenant) {
		aadError(w, http.StatusBadRequest, "invalid_tenant", 90002, tenantNotFound(tenant))
		return
	}
	base := "https://" + host + "/" + tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                                base + "/v2.0",
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"tenant_region_scope":                   "WW",
		"cloud_instance_name":                   "microsoftonline.com",
	})
}

func tenantNotFound(tenant string) string {
	return fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant)
}

// aadError writes an Entra ID error body with its AADSTS code, in Entra's shape.
func aadError(w http.ResponseWriter, status int, kind string, code int, description string) {
	now := time.Now().UTC()
	traceID, correlationID := newGUID(), newGUID()
	writeJSON(w, status, map[string]any{
		"error": kind,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s",
			code, description, traceID, correlationID, now.Format("2006-01-02 15:04:05Z")),
		"error_codes":    []int{code},
		"timestamp":      now.Format("2006-01-02 15:04:05Z"),
		"trace_id":       traceID,
		"correlation_id": correlationID,
		"error_uri":      fmt.Sprintf("https://login.microsoftonline.com/error?code=%d", code),
	})
}

// entraToken is the client credentials grant: the client authenticates with a federated assertion, a certificate
// assertion or a secret.
func (c *Cloud) entraToken(w http.ResponseWriter, r *http.Request, host, tenant string, f Fault) {
	if !c.knownTenant(tenant) {
		aadError(w, http.StatusBadRequest, "invalid_request", 90002, tenantNotFound(tenant))
		return
	}
	if err := r.ParseForm(); err != nil {
		aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		aadError(w, http.StatusBadRequest, "unsupported_grant_type", 70003, "The app requested an unsupported grant type '"+gt+"'.")
		return
	}
	clientID := r.PostForm.Get("client_id")
	id, known := c.identity(clientID)
	if !known || !id.inTenant(tenant) {
		aadError(w, http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf(
			"Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant.",
			clientID, tenant))
		return
	}
	switch {
	case r.PostForm.Get("client_assertion") != "":
		if r.PostForm.Get("client_assertion_type") != clientAssertionType {
			aadError(w, http.StatusBadRequest, "invalid_request", 50027, "JWT token is invalid or malformed: unsupported client_assertion_type.")
			return
		}
		raw := r.PostForm.Get("client_assertion")
		check := c.checkAssertion
		if isCertificateAssertion(raw, id.ClientID) {
			check = func(clientID, raw string) *rejection { return c.checkCertificateAssertion(clientID, host, tenant, raw) }
		}
		if rejection := check(id.ClientID, raw); rejection != nil {
			aadError(w, rejection.status, rejection.kind, rejection.code, rejection.description)
			return
		}
	case r.PostForm.Get("client_secret") != "":
		c.mu.RLock()
		secret := c.secrets[strings.ToLower(clientID)]
		c.mu.RUnlock()
		if secret == "" || secret != r.PostForm.Get("client_secret") {
			aadError(w, http.StatusUnauthorized, "invalid_client", 7000215,
				fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", id.ClientID))
			return
		}
	default:
		aadError(w, http.StatusBadRequest, "invalid_client", 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	audience, ok := clientCredentialsAudience(r.PostForm.Get("scope"))
	if !ok {
		aadError(w, http.StatusBadRequest, "invalid_scope", 1002012, fmt.Sprintf(
			"The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
			r.PostForm.Get("scope")))
		return
	}
	token, exp, err := c.issueEntra(id, tenant, audience, f.NoExp)
	if err != nil {
		aadError(w, http.StatusInternalServerError, "server_error", 50000, "There was an error issuing a token.")
		return
	}
	secs := int(time.Until(exp).Round(time.Second).Seconds())
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": secs, "ext_expires_in": secs, "access_token": token})
}

// clientCredentialsAudience turns a client credentials scope ("<resource>/.default", possibly beside the OIDC scopes
// MSAL may add) into the token audience.
func clientCredentialsAudience(scope string) (string, bool) {
	var resources []string
	for _, s := range strings.Fields(scope) {
		switch s {
		case "openid", "profile", "offline_access":
			continue
		}
		resources = append(resources, s)
	}
	if len(resources) != 1 || !strings.HasSuffix(resources[0], "/.default") {
		return "", false
	}
	return strings.TrimSuffix(resources[0], "/.default"), true
}

// rejection is why Entra ID refuses a client assertion.
type rejection struct {
	status      int
	kind        string
	code        int
	description string
}

// checkAssertion verifies a service-account token presented as a client assertion, as Entra ID does for workload
// identity federation: signature by the issuer's keys, time validity, and a federated credential on the identity
// matching issuer, subject and audience exactly.
func (c *Cloud) checkAssertion(clientID, raw string) *rejection {
	malformed := &rejection{http.StatusBadRequest, "invalid_request", 50027, "JWT token is invalid or malformed."}
	unverified := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(raw, unverified); err != nil {
		return malformed
	}
	issuer, _ := unverified.GetIssuer()
	c.mu.RLock()
	keys := slices.Clone(c.issuers[issuer])
	creds := slices.Clone(c.federated[strings.ToLower(clientID)])
	c.mu.RUnlock()
	if len(keys) == 0 {
		return &rejection{http.StatusUnauthorized, "invalid_client", 700211, fmt.Sprintf(
			"No matching federated identity record found for presented assertion issuer '%s'. Please note that the matching is done using case-sensitive comparison.", issuer)}
	}
	parser := jwt.NewParser(jwt.WithValidMethods([]string{"RS256", "ES256"}), jwt.WithExpirationRequired(), jwt.WithLeeway(assertionLeeway))
	var claims jwt.MapClaims
	var verr error
	for _, key := range keys {
		claims = jwt.MapClaims{}
		_, verr = parser.ParseWithClaims(raw, claims, func(*jwt.Token) (any, error) { return key, nil })
		if !errors.Is(verr, jwt.ErrTokenSignatureInvalid) {
			break // verified, or failed for a reason other than this key
		}
	}
	switch {
	case errors.Is(verr, jwt.ErrTokenExpired) || errors.Is(verr, jwt.ErrTokenNotValidYet):
		return &rejection{http.StatusUnauthorized, "invalid_client", 700024, fmt.Sprintf(
			"Client assertion is not within its valid time range. Current time: %s.", time.Now().UTC().Format(time.RFC3339))}
	case errors.Is(verr, jwt.ErrTokenSignatureInvalid):
		return &rejection{http.StatusUnauthorized, "invalid_client", 50013, "Assertion failed signature validation."}
	case verr != nil:
		return malformed
	}
	subject, _ := claims.GetSubject()
	audiences, _ := claims.GetAudience()
	for _, fc := range creds {
		if fc.Issuer == issuer && fc.Subject == subject && slices.ContainsFunc(audiences, func(a string) bool { return slices.Contains(fc.Audiences, a) }) {
			return nil
		}
	}
	return &rejection{http.StatusBadRequest, "invalid_request", 70021, fmt.Sprintf(
		"No matching federated identity record found for presented assertion. Assertion Issuer: '%s'. Assertion Subject: '%s'. Assertion Audience: '%s'. https://learn.microsoft.com/entra/workload-id/workload-identity-federation",
		issuer, subject, strings.Join(audiences, ","))}
}
