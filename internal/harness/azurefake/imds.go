/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// imdsTokenPath is the managed identity token endpoint of the instance metadata service.
const imdsTokenPath = "/metadata/identity/oauth2/token"

// imdsInstancePath is the instance metadata endpoint, which describes the VM itself.
const imdsInstancePath = "/metadata/instance"

// serveInstance answers the instance metadata endpoint with a minimal VM description, so that what passes through
// a node agent to IMDS can be told from what the agent answers itself.
func serveInstance(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Metadata") != "true" {
		imdsError(w, "Required metadata header not specified")
		return
	}
	if r.URL.Query().Get("api-version") == "" {
		imdsError(w, "Required query variable 'api-version' is missing")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"compute": map[string]string{
		"azEnvironment": "AzurePublicCloud", "location": "eastus", "name": "fake-vm", "osType": "Linux", "vmId": "00000000-0000-0000-0000-00000000f00d",
	}})
}

// IISPath is the path the real IMDS routes a request by. It runs on IIS, which decodes percent-encoding (%2f and %5c
// included), takes \ for /, removes dot segments and empty segments, and compares paths ignoring case. So the fake
// routes the same way: whatever spelling of its token path a node agent lets through gets a token, as it would from
// the real one.
func IISPath(u *url.URL) string {
	raw := u.RawPath
	if raw == "" {
		raw = u.EscapedPath()
	}
	decoded, err := url.PathUnescape(raw)
	if err != nil {
		decoded = raw
	}
	return path.Clean("/" + strings.ReplaceAll(decoded, `\`, "/"))
}

// serveIMDS answers the instance metadata service's managed identity endpoint for identities assigned to "this VM".
func (c *Cloud) serveIMDS(w http.ResponseWriter, r *http.Request) {
	routed := IISPath(r.URL)
	if strings.EqualFold(routed, imdsInstancePath) && r.Method == http.MethodGet {
		serveInstance(w, r)
		return
	}
	if !strings.EqualFold(routed, imdsTokenPath) || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	f, ok := c.endpoint(IMDSToken, w, r)
	if !ok {
		return
	}
	if r.Header.Get("Metadata") != "true" {
		imdsError(w, "Required metadata header not specified")
		return
	}
	q := r.URL.Query()
	if q.Get("api-version") == "" {
		imdsError(w, "Required query variable 'api-version' is missing")
		return
	}
	resource := strings.TrimSuffix(q.Get("resource"), "/.default")
	if resource == "" {
		imdsError(w, "Required query variable 'resource' is missing")
		return
	}
	// A node placed on a VM or scale set gets the identities ARM assigned there; any other caller those AssignedToVM.
	id, problem := c.imdsIdentity(r, q.Get("client_id"), firstNonEmpty(q.Get("msi_res_id"), q.Get("mi_res_id")), q.Get("object_id"))
	if problem != "" {
		imdsError(w, problem)
		return
	}
	// IMDS answers for any resource, as the real one does: Entra ID decides nothing about audiences here.
	token, exp, err := c.issueEntra(id, id.TenantID, resource, f.NoExp)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error", "error_description": "token signing failed"})
		return
	}
	now := time.Now()
	secs := strconv.Itoa(int(exp.Sub(now).Round(time.Second).Seconds()))
	// IMDS sends every value as a string, numbers included.
	writeJSON(w, http.StatusOK, map[string]string{
		"access_token": token, "client_id": id.ClientID, "expires_in": secs, "ext_expires_in": secs,
		"expires_on": strconv.FormatInt(exp.Unix(), 10), "not_before": strconv.FormatInt(now.Unix(), 10),
		"resource": q.Get("resource"), "token_type": "Bearer",
	})
}

func imdsError(w http.ResponseWriter, description string) {
	writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": description})
}

// assignedIdentity finds the identity IMDS would answer for: the one named, if assigned to the VM; with no name, the
// only one assigned. The problem is IMDS's error description when there is none.
func (c *Cloud) assignedIdentity(clientID, resourceID, objectID string) (Identity, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	named := clientID != "" || resourceID != "" || objectID != ""
	var assigned []Identity
	for _, id := range c.identities {
		if !id.AssignedToVM {
			continue
		}
		if !named {
			assigned = append(assigned, id)
			continue
		}
		if (clientID != "" && strings.EqualFold(id.ClientID, clientID)) ||
			(resourceID != "" && strings.EqualFold(id.ResourceID, resourceID)) ||
			(objectID != "" && strings.EqualFold(id.PrincipalID, objectID)) {
			return id, ""
		}
	}
	switch {
	case !named && len(assigned) == 1:
		return assigned[0], ""
	case !named && len(assigned) > 1:
		return Identity{}, "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"
	}
	return Identity{}, "Identity not found"
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
