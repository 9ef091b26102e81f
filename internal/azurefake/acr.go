/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// acrAudience is the audience of Entra tokens meant for container registries.
const acrAudience = "https://containerregistry.azure.net"

// tokenUsername is the user name ACR's Docker token endpoint expects with a token as the password.
const tokenUsername = "00000000-0000-0000-0000-000000000000"

func (c *Cloud) serveACR(w http.ResponseWriter, r *http.Request, reg Registry) {
	switch {
	case r.URL.Path == "/oauth2/exchange" && r.Method == http.MethodPost:
		if f, ok := c.endpoint(ACRExchange, w); ok {
			c.exchange(w, r, reg, f)
		}
	case r.URL.Path == "/oauth2/token" && r.Method == http.MethodPost:
		if f, ok := c.endpoint(ACRToken, w); ok {
			c.accessTokenFromRefresh(w, r, reg, f)
		}
	case r.URL.Path == "/oauth2/token" && r.Method == http.MethodGet:
		if f, ok := c.endpoint(ACRTokenGet, w); ok {
			c.dockerToken(w, r, reg, f)
		}
	case r.URL.Path == "/v2" || strings.HasPrefix(r.URL.Path, "/v2/"):
		if _, ok := c.endpoint(RegistryV2, w); ok {
			c.proxyRegistry(w, r, reg)
		}
	default:
		http.NotFound(w, r)
	}
}

func acrError(w http.ResponseWriter, status int, code, message string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="acr"`)
	}
	writeJSON(w, status, map[string]any{"errors": []map[string]string{{"code": code, "message": message}}})
}

// exchange trades an Entra ID token for the registry's refresh token, for identities with a role on the registry.
func (c *Cloud) exchange(w http.ResponseWriter, r *http.Request, reg Registry, f Fault) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "access_token" {
		acrError(w, http.StatusBadRequest, "UNSUPPORTED", "grant_type must be access_token")
		return
	}
	if !strings.EqualFold(r.PostForm.Get("service"), reg.Host) {
		acrError(w, http.StatusBadRequest, "INVALID_SERVICE", "service does not match the registry")
		return
	}
	claims, err := c.parseEntra(r.PostForm.Get("access_token"))
	if err != nil {
		acrError(w, http.StatusUnauthorized, "UNAUTHORIZED", "the access token is invalid or expired")
		return
	}
	audiences, _ := claims.GetAudience()
	if !slices.ContainsFunc(audiences, func(a string) bool { return c.acceptsAudience(reg, a) }) {
		acrError(w, http.StatusUnauthorized, "UNAUTHORIZED", "the access token's audience is not accepted by this registry")
		return
	}
	id, ok := c.identityOf(claims)
	if !ok || len(c.assignments(id.ClientID, reg.Host)) == 0 {
		acrError(w, http.StatusUnauthorized, "UNAUTHORIZED", "the identity has no role on this registry")
		return
	}
	rt, err := c.issueACR(ACRExchange, reg.Host, id, nil, true, f.NoExp)
	if err != nil {
		acrError(w, http.StatusInternalServerError, "INTERNAL", "signing failed")
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

func (c *Cloud) identityOf(claims jwt.MapClaims) (Identity, bool) {
	clientID, _ := claims["appid"].(string)
	c.mu.RLock()
	defer c.mu.RUnlock()
	id, ok := c.identities[strings.ToLower(clientID)]
	return id, ok
}

func (c *Cloud) assignments(clientID, host string) []roleAssignment {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.roles[strings.ToLower(clientID)][host])
}

// accessTokenFromRefresh trades the registry's refresh token for an access token limited to the requested scopes.
func (c *Cloud) accessTokenFromRefresh(w http.ResponseWriter, r *http.Request, reg Registry, f Fault) {
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "refresh_token" {
		acrError(w, http.StatusBadRequest, "UNSUPPORTED", "grant_type must be refresh_token")
		return
	}
	claims, ok := c.parseACR(r.PostForm.Get("refresh_token"), reg.Host)
	if !ok || claims["grant_type"] != "refresh_token" {
		acrError(w, http.StatusUnauthorized, "UNAUTHORIZED", "the refresh token is invalid or expired")
		return
	}
	id, ok := c.identityOf(claims)
	if !ok {
		acrError(w, http.StatusUnauthorized, "UNAUTHORIZED", "unknown identity")
		return
	}
	requested, err := parseScopes(r.PostForm["scope"])
	if err != "" {
		acrError(w, http.StatusBadRequest, "INVALID_SCOPE", err)
		return
	}
	token, signErr := c.issueACR(ACRToken, reg.Host, id, grant(requested, c.assignments(id.ClientID, reg.Host)), false, f.NoExp)
	if signErr != nil {
		acrError(w, http.StatusInternalServerError, "INTERNAL", "signing failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"access_token": token})
}

// dockerToken is the Docker registry token endpoint: Basic auth with the null-GUID user and an ACR refresh or access
// token as the password, as docker and every registry client send it.
func (c *Cloud) dockerToken(w http.ResponseWriter, r *http.Request, reg Registry, f Fault) {
	user, password, ok := r.BasicAuth()
	if !ok || user != tokenUsername {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+reg.Host+`"`)
		acrError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required")
		return
	}
	claims, valid := c.parseACR(password, reg.Host)
	if !valid {
		acrError(w, http.StatusUnauthorized, "UNAUTHORIZED", "the password is not a valid token for this registry")
		return
	}
	id, known := c.identityOf(claims)
	if !known {
		acrError(w, http.StatusUnauthorized, "UNAUTHORIZED", "unknown identity")
		return
	}
	requested, err := parseScopes(r.URL.Query()["scope"])
	if err != "" {
		acrError(w, http.StatusBadRequest, "INVALID_SCOPE", err)
		return
	}
	var granted []access
	if claims["grant_type"] == "refresh_token" {
		granted = grant(requested, c.assignments(id.ClientID, reg.Host))
	} else {
		// An access token as password grants at most what it already holds.
		granted = grant(requested, heldAccess(claims))
	}
	token, signErr := c.issueACR(ACRTokenGet, reg.Host, id, granted, false, f.NoExp)
	if signErr != nil {
		acrError(w, http.StatusInternalServerError, "INTERNAL", "signing failed")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": token, "access_token": token})
}

// parseScopes reads scope parameters (repeated or space-separated) of the form repository:<name>:<actions>.
func parseScopes(values []string) ([]access, string) {
	var out []access
	for _, v := range values {
		for _, s := range strings.Fields(v) {
			parts := strings.Split(s, ":")
			if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
				return nil, "malformed scope " + s
			}
			if parts[0] != "repository" {
				continue
			}
			if strings.Contains(parts[1], "*") {
				return nil, "wildcard repository names are not allowed"
			}
			out = append(out, access{Type: "repository", Name: parts[1], Actions: strings.Split(parts[2], ",")})
		}
	}
	return out, ""
}

// grant intersects requested access with role assignments.
func grant(requested []access, roles []roleAssignment) []access {
	var out []access
	for _, req := range requested {
		var actions []string
		for _, role := range roles {
			if !slices.Contains(role.repositories, "*") && !slices.Contains(role.repositories, req.Name) {
				continue
			}
			for _, a := range req.Actions {
				if slices.Contains(role.actions, a) && !slices.Contains(actions, a) {
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

// proxyRegistry forwards the registry API to the real registry, keeping the public host and scheme so the
// registry's redirects and upload locations point back through the proxy.
func (c *Cloud) proxyRegistry(w http.ResponseWriter, r *http.Request, reg Registry) {
	if reg.Upstream == nil {
		http.NotFound(w, r)
		return
	}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(reg.Upstream)
		pr.Out.Host = reg.Host
		pr.Out.Header.Set("X-Forwarded-Proto", "https")
		pr.Out.Header.Set("X-Forwarded-Host", reg.Host)
	}}
	rp.ServeHTTP(w, r)
}

// IssueRefreshToken mints a registry refresh token for an identity directly, as an administrator's `az acr login`
// would; test harnesses use it to push images.
func (c *Cloud) IssueRefreshToken(clientID, host string) (string, error) {
	c.mu.RLock()
	id, ok := c.identities[strings.ToLower(clientID)]
	c.mu.RUnlock()
	if !ok {
		return "", errUnknownIdentity
	}
	return c.issueACR(ACRExchange, strings.ToLower(host), id, nil, true, false)
}
