/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package acrserver decides whether a binding's registry may receive a token: the check behind
// --allowed-acr-server-suffixes, which keeps a tenant from having the controller send a credential to a host of the
// tenant's choosing. It is a package of its own so that its fuzz target builds without the controller.
package acrserver

import (
	"fmt"
	"net/url"
	"strings"
)

// Allowed accepts a bare host name equal to an allowed suffix or ending in "." plus one, compared in lower case. No
// suffixes allow no host: the check fails closed. (msi-acrpull skipped it without the flag, which let any binding's
// author have an identity's token sent to a host of their choosing.)
func Allowed(server string, suffixes []string) error {
	if len(suffixes) == 0 {
		return fmt.Errorf("ACR server %q is refused: no ACR server suffixes are allowed", server)
	}
	u, err := url.Parse("https://" + server)
	if err != nil || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Port() != "" ||
		u.Hostname() != server {
		return fmt.Errorf("ACR server %q is not a plain host name", server)
	}
	host := strings.ToLower(u.Hostname())
	for _, suffix := range suffixes {
		if host == suffix || strings.HasSuffix(host, "."+suffix) {
			return nil
		}
	}
	return fmt.Errorf("ACR server %q is not in the allowed ACR server suffixes: %s", server, strings.Join(suffixes, ", "))
}
