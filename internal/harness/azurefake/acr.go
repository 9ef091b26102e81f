/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// acrAudience is the audience of Entra tokens meant for container registries.
const acrAudience = "https://containerregistry.azure.net"

// TokenUsername is the user name ACR's Docker token endpoint expects with a registry token as the password.
const TokenUsername = "00000000-0000-0000-0000-000000000000"

// errUnknownIdentity is returned when minting for a client ID the fake does not hold.
var errUnknownIdentity = errors.New("unknown identity")

func (c *Cloud) serveACR(w http.ResponseWriter, r *http.Request, reg Registry) {
	switch {
	case r.URL.Path == "/oauth2/exchange" && r.Method == http.MethodPost:
		if f, ok := c.endpoint(ACRExchange, w, r); ok {
			c.exchange(w, r, reg, f)
		}
	case r.URL.Path == "/oauth2/token" && r.Method == http.MethodPost:
		if f, ok := c.endpoint(ACRToken, w, r); ok {
			c.accessTokenFromRefresh(w, r, reg, f)
		}
	case r.URL.Path == "/oauth2/token" && r.Method == http.MethodGet:
		if f, ok := c.endpoint(ACRTokenGet, w, r); ok {
			c.dockerToken(w, r, reg, f)
		}
	case r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/"):
		if _, ok := c.endpoint(RegistryV2, w, r); ok {
			c.proxyRegistry(w, r, reg)
		}
	default:
		http.NotFound(w, r)
	}
}

// acrError writes an error in the registry's JSON shape; a 401 carries a challenge unless one is already set.
func acrError(w http.ResponseWriter, reg Registry, status int, code, message string) {
	if status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="https://%s/oauth2/token",service="%s"`, reg.Host, reg.Host))
	}
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
}

// exchange trades an Entra ID token for the registry's refresh token, for identities with a role on the registry.
func (c *Cloud) exchange(w http.ResponseWriter, r *http.Request, reg Registry, f Fault) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "access_token" {
		acrError(w, reg, http.StatusBadRequest, "UNSUPPORTED", "grant_type must be access_token")
		return
	}
	if !strings.EqualFold(r.PostForm.Get("service"), reg.Host) {
		acrError(w, reg, http.StatusUnauthorized, "UNAUTHORIZED", "the service does not name this registry")
		return
	}
	claims, err := c.parseEntra(r.PostForm.Get("access_token"))
	if err != nil {
		acrError(w, reg, http.StatusUnauthorized, "UNAUTHORIZED", "the access token is invalid or expired")
		return
	}
	audiences, _ := claims.GetAudience()
	if !slices.ContainsFunc(audiences, func(a string) bool { return c.acceptsAudience(reg, a) }) {
		acrError(w, reg, http.StatusUnauthorized, "UNAUTHORIZED", "the access token's audience is not accepted by this registry")
		return
	}
	if tenant := r.PostForm.Get("tenant"); tenant != "" && !strings.EqualFold(tenant, stringClaim(claims, "tid")) {
		acrError(w, reg, http.StatusUnauthorized, "UNAUTHORIZED", "the access token was not issued by the tenant named")
		return
	}
	id, ok := c.identityOf(claims)
	if !ok || len(c.assignments(id.ClientID, reg.Host)) == 0 {
		acrError(w, reg, http.StatusUnauthorized, "UNAUTHORIZED", "the identity has no role on this registry")
		return
	}
	rt, err := c.issueACR(ACRExchange, reg.Host, id, nil, true, f.NoExp)
	if err != nil {
		acrError(w, reg, http.StatusInternalServerError, "INTERNAL_ERROR", "token signing failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"refresh_token": rt})
}

func (c *Cloud) acceptsAudience(reg Registry, audience string) bool {
	audience = strings.TrimSuffix(audience, "/")
	if audience == acrAudience {
		return true
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return !reg.DisableARMAudience && c.armAudience[audience]
}

// identityOf finds the identity a token was issued to, by application ID and then by object ID.
func (c *Cloud) identityOf(claims jwt.MapClaims) (Identity, bool) {
	if id, ok := c.identity(stringClaim(claims, "appid")); ok {
		return id, true
	}
	oid := stringClaim(claims, "oid")
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, id := range c.identities {
		if oid != "" && strings.EqualFold(id.PrincipalID, oid) {
			return id, true
		}
	}
	return Identity{}, false
}

func stringClaim(claims jwt.MapClaims, name string) string {
	s, _ := claims[name].(string)
	return s
}

func (c *Cloud) assignments(clientID, host string) []roleAssignment {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.roles[strings.ToLower(clientID)][host])
}

// accessTokenFromRefresh trades the registry's refresh token for an access token limited to the requested scopes
// and to the identity's current role assignments.
func (c *Cloud) accessTokenFromRefresh(w http.ResponseWriter, r *http.Request, reg Registry, f Fault) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "refresh_token" {
		acrError(w, reg, http.StatusBadRequest, "UNSUPPORTED", "grant_type must be refresh_token")
		return
	}
	if !strings.EqualFold(r.PostForm.Get("service"), reg.Host) {
		acrError(w, reg, http.StatusUnauthorized, "UNAUTHORIZED", "the service does not name this registry")
		return
	}
	claims, ok := c.parseACR(r.PostForm.Get("refresh_token"), reg.Host)
	if !ok || claims["grant_type"] != "refresh_token" {
		acrError(w, reg, http.StatusUnauthorized, "UNAUTHORIZED", "the refresh token is invalid or expired")
		return
	}
	id, ok := c.identityOf(claims)
	if !ok {
		acrError(w, reg, http.StatusUnauthorized, "UNAUTHORIZED", "the refresh token's identity no longer exists")
		return
	}
	requested, err := parseScopes(r.PostForm["scope"])
	if err != nil {
		acrError(w, reg, http.StatusBadRequest, "INVALID_SCOPE", err.Error())
		return
	}
	token, err := c.issueACR(ACRToken, reg.Host, id, grant(requested, c.assignments(id.ClientID, reg.Host)), false, f.NoExp)
	if err != nil {
		acrError(w, reg, http.StatusInternalServerError, "INTERNAL_ERROR", "token signing failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"access_token": token})
}

// dockerToken is the Docker registry token endpoint: Basic auth with the null-GUID user and an ACR refresh or access
// token as the password, as docker and every registry client send it.
func (c *Cloud) dockerToken(w http.ResponseWriter, r *http.Request, reg Registry, f Fault) {
	unauthorized := func(message string) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm="https://%s/oauth2/token"`, reg.Host))
		acrError(w, reg, http.StatusUnauthorized, "UNAUTHORIZED", message)
	}
	user, password, ok := r.BasicAuth()
	if !ok || user != TokenUsername {
		unauthorized("authentication required")
		return
	}
	if service := r.URL.Query().Get("service"); service != "" && !strings.EqualFold(service, reg.Host) {
		unauthorized("the service does not name this registry")
		return
	}
	claims, valid := c.parseACR(password, reg.Host)
	if !valid {
		unauthorized("the password is not a valid token for this registry")
		return
	}
	id, known := c.identityOf(claims)
	if !known {
		unauthorized("the token's identity no longer exists")
		return
	}
	requested, err := parseScopes(r.URL.Query()["scope"])
	if err != nil {
		acrError(w, reg, http.StatusBadRequest, "INVALID_SCOPE", err.Error())
		return
	}
	var granted []access
	if claims["grant_type"] == "refresh_token" {
		granted = grant(requested, c.assignments(id.ClientID, reg.Host))
	} else {
		// An access token as password grants at most what it already holds.
		granted = grant(requested, heldAccess(claims))
	}
	token, err := c.issueACR(ACRTokenGet, reg.Host, id, granted, false, f.NoExp)
	if err != nil {
		acrError(w, reg, http.StatusInternalServerError, "INTERNAL_ERROR", "token signing failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": token, "access_token": token})
}

// parseScopes reads scope parameters (repeated or space-separated) of the form repository:<name>:<actions>. Scopes
// of other resource types (registry:catalog:*) grant nothing here.
func parseScopes(values []string) ([]access, error) {
	var out []access
	for _, v := range values {
		for _, s := range strings.Fields(v) {
			parts := strings.Split(s, ":")
			if len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
				return nil, fmt.Errorf("malformed scope %q: want type:name:actions", s)
			}
			if parts[0] != "repository" {
				continue
			}
			if strings.Contains(parts[1], "*") {
				return nil, fmt.Errorf("scope %q: wildcard repository names are not allowed", s)
			}
			out = append(out, access{Type: "repository", Name: parts[1], Actions: strings.Split(parts[2], ",")})
		}
	}
	return out, nil
}

// grant intersects requested access with role assignments; a repository outside every role gets no entry.
func grant(requested []access, roles []roleAssignment) []access {
	var out []access
	for _, req := range requested {
		var actions []string
		for _, role := range roles {
			if !slices.Contains(role.repositories, "*") && !slices.Contains(role.repositories, req.Name) {
				continue
			}
			for _, a := range req.Actions {
				if (slices.Contains(role.actions, a) || slices.Contains(role.actions, "*")) && !slices.Contains(actions, a) {
					actions = append(actions, a)
				}
			}
		}
		if len(actions) > 0 {
			out = append(out, access{Type: "repository", Name: req.Name, Actions: actions})
		}
	}
	return out
}

// heldAccess turns an access token's claim back into role assignments, so it can only be narrowed.
func heldAccess(claims jwt.MapClaims) []roleAssignment {
	entries, _ := claims["access"].([]any)
	var out []roleAssignment
	for _, e := range entries {
		m, _ := e.(map[string]any)
		if m["type"] != "repository" {
			continue
		}
		name, _ := m["name"].(string)
		var actions []string
		raw, _ := m["actions"].([]any)
		for _, a := range raw {
			if s, ok := a.(string); ok {
				actions = append(actions, s)
			}
		}
		out = append(out, roleAssignment{repositories: []string{name}, actions: actions})
	}
	return out
}

// IssueRefreshToken mints a registry refresh token for an identity directly, as an administrator's `az acr login`
// would; test harnesses use it to push images. It goes through no endpoint, so no counter or fault sees it.
func (c *Cloud) IssueRefreshToken(clientID, host string) (string, error) {
	id, ok := c.identity(clientID)
	if !ok {
		return "", fmt.Errorf("issuing a refresh token for %s: %w", clientID, errUnknownIdentity)
	}
	return c.issueACR(ACRExchange, strings.ToLower(host), id, nil, true, false)
}
