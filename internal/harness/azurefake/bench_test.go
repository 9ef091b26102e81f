/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The fake serves load tests of tens of thousands of token requests; these measure its cost per request through the
// proxy (tunnels kept alive, as real clients keep them).
func BenchmarkIMDSToken(b *testing.B) {
	client := fake.HTTPClient()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodGet, imdsURL+"&client_id="+puller, nil)
			req.Header.Set("Metadata", "true")
			benchDo(b, client, req)
		}
	})
}

func BenchmarkACRAccessToken(b *testing.B) {
	client := fake.HTTPClient()
	refresh, err := fake.IssueRefreshToken(puller, host)
	if err != nil {
		b.Fatal(err)
	}
	form := url.Values{"grant_type": {"refresh_token"}, "service": {host}, "scope": {"repository:alice:pull"}, "refresh_token": {refresh}}.Encode()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, "https://"+host+"/oauth2/token", strings.NewReader(form))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			benchDo(b, client, req)
		}
	})
}

func benchDo(b *testing.B, client *http.Client, req *http.Request) {
	resp, err := client.Do(req)
	if err != nil {
		b.Error(err)
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Errorf("HTTP %d", resp.StatusCode)
	}
}
