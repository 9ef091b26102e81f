/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// The pull check: one request to the registry's own API, with a credential acrpull just minted, that says whether
// the credential can read the repository it was minted for.

package azauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// EndpointRegistry is the registry's own API (/v2/), which only the pull check calls.
const EndpointRegistry = "acr-registry"

// PullOutcome is what the registry's answer to a pull check means. The values are the Verified condition's reasons.
type PullOutcome string

// The outcomes of a pull check.
const (
	// PullVerified: the registry listed the repository's tags for the credential.
	PullVerified PullOutcome = "PullVerified"
	// RepositoryNotFound: the credential may read the repository, and the registry has no repository of that name.
	RepositoryNotFound PullOutcome = "RepositoryNotFound"
	// ScopeDenied: the registry refused the credential for the repository (401/403): the identity may not pull it.
	ScopeDenied PullOutcome = "ScopeDenied"
	// RegistryUnreachable: no answer, or none that says anything about the credential (5xx, 429, a redirect...).
	RegistryUnreachable PullOutcome = "RegistryUnreachable"
)

// PullCheck is the result of a pull check. Detail is built by acrpull from the status and the registry's error
// code only, never from a response body or the token, so it is safe for conditions, Events and logs.
type PullCheck struct {
	Outcome PullOutcome
	Detail  string
}

// Bounds of a pull check: it answers a yes/no question, so it needs neither long nor much.
const (
	maxPullCheckTime = 10 * time.Second
	// maxPullCheckBody is all of a response body acrpull reads; a tag list of one entry or an error fits easily.
	maxPullCheckBody = 64 << 10
)

// registryErrorCode is the shape of a distribution error code (NAME_UNKNOWN, DENIED); anything else is not quoted.
var registryErrorCode = regexp.MustCompile(`^[A-Z][A-Z_]{0,63}$`)

// CheckPull asks server's registry API for one tag of repository with accessToken, an access token for a scope
// naming it: GET https://<server>/v2/<repository>/tags/list?n=1, the smallest read that needs pull rights. The
// request goes to server and nowhere else (a redirect is not followed: the token would follow it), is bounded in
// time and in the bytes read, and is never retried.
func (c *Client) CheckPull(ctx context.Context, server, repository string, accessToken Token) PullCheck {
	target, err := tagListURL(server, repository)
	if err != nil {
		return PullCheck{Outcome: RegistryUnreachable, Detail: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, min(c.timeout, maxPullCheckTime))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return PullCheck{Outcome: RegistryUnreachable, Detail: "request not built"}
	}
	req.Header.Set("Authorization", "Bearer "+accessToken.Value)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", strings.TrimSpace("acrpull "+c.userAgent))
	resp, err := c.registryHTTP.Do(req)
	if err != nil {
		detail := noResponse(err)
		if errors.Is(err, context.DeadlineExceeded) {
			detail = "timed out"
		}
		return PullCheck{Outcome: RegistryUnreachable, Detail: fmt.Sprintf("%s: %s", EndpointRegistry, detail)}
	}
	defer resp.Body.Close()
	return JudgePull(resp.StatusCode, errorCodeOf(io.LimitReader(resp.Body, maxPullCheckBody)))
}

// tagListURL is the tag-list URL of repository on server, refusing anything but a plain host and a repository name
// of the registry's grammar, so the request cannot be steered to another host or path.
func tagListURL(server, repository string) (string, error) {
	u, err := url.Parse("https://" + server)
	if err != nil || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Host != server {
		return "", errors.New("registry server is not a plain host name")
	}
	if !repositoryName.MatchString(repository) {
		return "", fmt.Errorf("repository %q is not a registry repository name", repository)
	}
	u.Path = "/v2/" + repository + "/tags/list"
	u.RawQuery = "n=1"
	return u.String(), nil
}

// repositoryName is the distribution specification's repository name grammar.
var repositoryName = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// errorCodeOf reads the first error code of a registry error body, "" when there is none of the expected shape.
func errorCodeOf(body io.Reader) string {
	var answer struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.NewDecoder(body).Decode(&answer) != nil || len(answer.Errors) == 0 {
		return ""
	}
	if code := answer.Errors[0].Code; registryErrorCode.MatchString(code) {
		return code
	}
	return ""
}

// JudgePull decides what a registry's answer to a tag-list request says about the credential that made it.
func JudgePull(status int, code string) PullCheck {
	answered := fmt.Sprintf("HTTP %d", status)
	if code != "" {
		answered += ", " + code
	}
	switch {
	case status == http.StatusOK:
		return PullCheck{Outcome: PullVerified, Detail: "the registry listed the repository's tags with this credential"}
	case status == http.StatusNotFound && code == "NAME_UNKNOWN":
		return PullCheck{Outcome: RepositoryNotFound, Detail: "the registry has no such repository (" + answered + ")"}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return PullCheck{Outcome: ScopeDenied, Detail: "the registry refused this credential for the repository (" + answered + ")"}
	case status >= 300 && status < 400:
		return PullCheck{Outcome: RegistryUnreachable, Detail: "the registry redirected the request, which is not followed with a token (" + answered + ")"}
	default:
		return PullCheck{Outcome: RegistryUnreachable, Detail: "the registry gave no answer about the repository (" + answered + ")"}
	}
}
