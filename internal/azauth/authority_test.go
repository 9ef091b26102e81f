/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/acrpull/acrpull/internal/azauth"
)

func TestCanonicalAuthority(t *testing.T) {
	for raw, want := range map[string]string{
		"https://login.microsoftonline.com/":     "https://login.microsoftonline.com/",
		"https://login.microsoftonline.com":      "https://login.microsoftonline.com/",
		"HTTPS://LOGIN.MicrosoftOnline.com/":     "https://login.microsoftonline.com/",
		"https://login.microsoftonline.com:443/": "https://login.microsoftonline.com/",
		"https://login.example:8443":             "https://login.example:8443/",
		"https://adfs.stack.example/adfs":        "https://adfs.stack.example/adfs/",
		"https://adfs.stack.example/adfs/":       "https://adfs.stack.example/adfs/",
		"https://10.0.0.1/":                      "https://10.0.0.1/",
		"https://[::1]:8443/":                    "https://[::1]:8443/",
		"https://[0:0::1]/":                      "https://[::1]/",
	} {
		got, err := azauth.CanonicalAuthority(raw)
		if err != nil || got != want {
			t.Errorf("CanonicalAuthority(%q) = %q, %v; want %q", raw, got, err, want)
		}
	}
	for _, raw := range []string{
		"",
		"login.microsoftonline.com",
		"http://login.microsoftonline.com/",
		"ftp://login.microsoftonline.com/",
		"https://user:pass@login.microsoftonline.com/",
		"https://login.microsoftonline.com@evil.example/",
		"https://evil.example\\@login.microsoftonline.com/",
		"https://login.microsoftonline.com/?x=1",
		"https://login.microsoftonline.com/#frag",
		"https://login%2emicrosoftonline.com/",
		"https://login.microsoftonline.com./",
		"https://login.microsoftonline.com:0/",
		"https://login.microsoftonline.com:99999/",
		"https://login.microsoftonline.com:+443/",
		"https://login.microsoftonline.com:/",
		"https://login.microsoftonline.com/../evil/",
		"https://login.microsoftonline.com/a//b/",
		"https://login.microsoftonline.com/./",
		"https:///tenant",
		"https://[1.2.3.4]/",
		"https://under_score.example/",
		"https:login.microsoftonline.com",
		"https://login.microsoftonline.com /",
	} {
		if got, err := azauth.CanonicalAuthority(raw); err == nil {
			t.Errorf("CanonicalAuthority(%q) = %q, want an error", raw, got)
		}
	}
}

func TestAuthorityHostsCheck(t *testing.T) {
	allowed, err := azauth.NewAuthorityHosts("login.airgap.example", "https://adfs.stack.example/adfs/", "LOGIN.PORTED.example:8443", " ")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		authority, want string // want "" for refused
	}{
		{"https://login.microsoftonline.com/", "https://login.microsoftonline.com/"},
		{"https://login.microsoftonline.us", "https://login.microsoftonline.us/"},
		{"https://login.chinacloudapi.cn/", "https://login.chinacloudapi.cn/"},
		{"https://Login.Airgap.Example/", "https://login.airgap.example/"},
		{"https://login.airgap.example:443", "https://login.airgap.example/"},
		{"https://adfs.stack.example/adfs", "https://adfs.stack.example/adfs/"},
		{"https://login.ported.example:8443/", "https://login.ported.example:8443/"},
		// Same host, another port or path: another server or route than the one allowed.
		{"https://login.airgap.example:8443/", ""},
		{"https://login.ported.example/", ""},
		{"https://adfs.stack.example/", ""},
		{"https://adfs.stack.example/adfs/other/", ""},
		{"https://login.microsoftonline.com/attacker-tenant/", ""},
		// Hosts that only look like allowed ones.
		{"https://login.microsoftonline.com.evil.example/", ""},
		{"https://evil.login.microsoftonline.com/", ""},
		{"https://login.microsoftonline.com@evil.example/", ""},
		{"http://login.microsoftonline.com/", ""},
		{"https://evil.example/", ""},
		{"not a url", ""},
	} {
		got, err := allowed.Check(tc.authority)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("Check(%q) allowed as %q", tc.authority, got)
		case tc.want == "" && !errors.Is(err, azauth.ErrAuthorityHostNotAllowed):
			t.Errorf("Check(%q): %v, want ErrAuthorityHostNotAllowed", tc.authority, err)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("Check(%q) = %q, %v; want %q", tc.authority, got, err, tc.want)
		}
	}

	// The refusal names the canonical host and how to allow it, never the raw value.
	_, err = allowed.Check("https://user:s3cret@evil.example/")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("refusal with user information: %v", err)
	}
	_, err = allowed.Check("https://EVIL.example/")
	if err == nil || !strings.Contains(err.Error(), "https://evil.example/") || !strings.Contains(err.Error(), "--allowed-authority-hosts") ||
		!strings.Contains(err.Error(), "allowedAuthorityHosts") {
		t.Errorf("refusal message: %v", err)
	}

	// Without an allow-list, only the known clouds.
	var none *azauth.AuthorityHosts
	if _, err := none.Check("https://login.microsoftonline.com/"); err != nil {
		t.Errorf("nil list refuses the public cloud: %v", err)
	}
	if _, err := none.Check("https://login.airgap.example/"); err == nil {
		t.Error("nil list allows an unknown host")
	}

	for _, bad := range []string{"http://login.example/", "https://u@login.example/", "login.example/?x", "login.example:port"} {
		if _, err := azauth.NewAuthorityHosts(bad); err == nil {
			t.Errorf("NewAuthorityHosts(%q) accepted", bad)
		}
	}
	if got := azauth.SplitAuthorityHostList(" a.example, ,https://b.example/ "); len(got) != 2 || got[0] != "a.example" || got[1] != "https://b.example/" {
		t.Errorf("SplitAuthorityHostList = %q", got)
	}
}

// FuzzAuthorityHostsCheck: parsing never panics, and an authority is allowed only if the host and port that Go's
// HTTP client would connect to, once the SDK has appended a tenant and the token path, are an allowed entry's.
func FuzzAuthorityHostsCheck(f *testing.F) {
	for _, s := range []string{
		"https://login.microsoftonline.com/", "https://login.airgap.example:8443/adfs/", "https://LOGIN.microsoftonline.us",
		"https://login.microsoftonline.com@evil/", "https://evil\\@login.microsoftonline.com/", "https://[::1]/",
		"https://login.microsoftonline.com./", "https://login.microsoftonline.com:443", "https://%6cogin.microsoftonline.com/",
		"https://login.microsoftonline.com/..%2f", "https:/\\login.microsoftonline.com", "\x00", "https://\u212aelvin.example/",
	} {
		f.Add(s)
	}
	allowed, err := azauth.NewAuthorityHosts("login.airgap.example:8443", "https://adfs.stack.example/adfs/")
	if err != nil {
		f.Fatal(err)
	}
	hosts := map[string]bool{}
	for _, a := range allowed.Allowed() {
		u, err := url.Parse(a)
		if err != nil {
			f.Fatal(err)
		}
		hosts[u.Host] = true
	}
	f.Fuzz(func(t *testing.T, raw string) {
		canonical, err := allowed.Check(raw)
		if err != nil {
			if !errors.Is(err, azauth.ErrAuthorityHostNotAllowed) {
				t.Fatalf("Check(%q): %v does not wrap ErrAuthorityHostNotAllowed", raw, err)
			}
			return
		}
		// What the SDK builds from the raw value: authority + tenant + token path.
		endpoint := strings.TrimSuffix(raw, "/") + "/tenant/oauth2/v2.0/token"
		u, err := url.Parse(endpoint)
		if err != nil {
			t.Fatalf("Check(%q) allowed a value whose token endpoint does not parse: %v", raw, err)
		}
		hostport := strings.ToLower(u.Host)
		if port := u.Port(); port == "443" {
			hostport = strings.TrimSuffix(hostport, ":443")
		}
		if !hosts[hostport] || u.Scheme != "https" || u.User != nil {
			t.Fatalf("Check(%q) allowed it as %q, but a client would connect to %q (%s)", raw, canonical, hostport, u.Scheme)
		}
	})
}
