/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package healthprobe

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

// /healthz answers upstream's body while the checks pass, and fails naming the check that does not.
func TestHealthzAnswersActiveOnlyWhileChecksPass(t *testing.T) {
	var broken error
	h := Handler(
		map[string]healthz.Checker{"ping": healthz.Ping, "redirect": func(*http.Request) error { return broken }},
		map[string]healthz.Checker{"serving": func(*http.Request) error { return errors.New("not yet") }},
	)
	if code, body := get(t, h, "/healthz"); code != http.StatusOK || body != "Active" {
		t.Errorf("/healthz: %d %q, want 200 Active", code, body)
	}
	broken = errors.New("chain gone")
	if code, body := get(t, h, "/healthz"); code != http.StatusInternalServerError || !strings.Contains(body, "redirect: chain gone") || strings.HasPrefix(body, "Active") {
		t.Errorf("/healthz with a failing check: %d %q", code, body)
	}
	if code, _ := get(t, h, "/healthz/ping"); code != http.StatusOK {
		t.Errorf("/healthz/ping: %d", code)
	}
	if code, body := get(t, h, "/readyz"); code != http.StatusInternalServerError || !strings.Contains(body, "serving") {
		t.Errorf("/readyz with a failing check: %d %q", code, body)
	}
}
