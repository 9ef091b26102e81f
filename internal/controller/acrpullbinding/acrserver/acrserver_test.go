/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrserver

import (
	"strings"
	"testing"
)

func TestServerAllowList(t *testing.T) {
	suffixes := []string{"azurecr.io", "azurecr.us"}
	for server, ok := range map[string]bool{
		"example.azurecr.io":                       true,
		"EXAMPLE.AzureCR.io":                       true,
		"example.azurecr.us":                       true,
		"azurecr.io":                               true,
		"example.azurecr.io.evil.example":          false,
		"registry.azurecr.io.attacker.example.com": false,
		"evilazurecr.io":                           false,
		"example.azurecr.io:443":                   false,
		"example.azurecr.io/path":                  false,
		"user@example.azurecr.io":                  false,
		"example.azurecr.io?x=1":                   false,
	} {
		if err := Allowed(server, suffixes); (err == nil) != ok {
			t.Errorf("%q: allowed = %v, want %v (%v)", server, err == nil, ok, err)
		}
	}
	if err := Allowed("anything.example", nil); err == nil {
		t.Error("an empty allow-list allowed a host")
	}
}

// FuzzServerAllowed: no input panics, and whatever is allowed is a bare host name within an allowed suffix.
func FuzzServerAllowed(f *testing.F) {
	for _, s := range []string{"example.azurecr.io", "x.azurecr.io.evil.example", "user@x.azurecr.io", "x.azurecr.io:443/p",
		"AZURECR.IO", "x.azurecr.io.", "[::1]", "%zz.azurecr.io", "a..azurecr.io", ".azurecr.io"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, server string) {
		if Allowed(server, []string{"azurecr.io"}) != nil {
			return
		}
		host := strings.ToLower(server)
		if strings.ContainsAny(host, ":/@?#") || !(host == "azurecr.io" || strings.HasSuffix(host, ".azurecr.io")) {
			t.Fatalf("allowed %q", server)
		}
	})
}
