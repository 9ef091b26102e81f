/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// runAsFakeazure makes the test binary act as the fakeazure command, so the tests run the real process.
const runAsFakeazure = "FAKEAZURE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsFakeazure) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const (
	clientID = "f0f0f0f0-0000-4000-8000-000000000001"
	tenantID = "f0f0f0f0-0000-4000-8000-0000000000aa"
)

// The process starts from flags and a config file, leaves its state files, answers through its proxy, obeys the
// admin API, logs requests without tokens and exits cleanly on SIGTERM.
func TestProcessServesAndObeysTheAdminAPI(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	config := `{"identities": [{"clientID": "` + clientID + `", "tenantID": "` + tenantID + `", "assignedToVM": true}]}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd := exec.Command(os.Args[0], "--state-dir", stateDir, "--config", filepath.Join(dir, "config.json"))
	cmd.Env = append(os.Environ(), runAsFakeazure+"=1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})

	adminURL := waitForFile(t, filepath.Join(stateDir, "admin-url"), exited)
	proxyURL, err := url.Parse(readTrimmed(t, filepath.Join(stateDir, "proxy-url")))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(readTrimmed(t, filepath.Join(stateDir, "ca.pem")))) {
		t.Fatal("ca.pem holds no certificate")
	}
	if _, err := os.Stat(filepath.Join(stateDir, "registry-token-cert.pem")); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(proxyURL), TLSClientConfig: &tls.Config{RootCAs: pool},
	}}

	status, token := imdsToken(t, client, clientID)
	if status != http.StatusOK || token == "" {
		t.Fatalf("IMDS through the process: HTTP %d", status)
	}
	admin(t, http.MethodPost, adminURL+"/faults", `{"imds-token": {"status": 429, "retryAfter": "7s"}}`)
	if status, _ := imdsToken(t, client, clientID); status != http.StatusTooManyRequests {
		t.Errorf("with a 429 fault: HTTP %d", status)
	}
	admin(t, http.MethodDelete, adminURL+"/faults", "")
	admin(t, http.MethodPost, adminURL+"/config", `{"identities": [{"clientID": "f0f0f0f0-0000-4000-8000-000000000002", "tenantID": "`+tenantID+`", "assignedToVM": true}]}`)
	if status, _ := imdsToken(t, client, "f0f0f0f0-0000-4000-8000-000000000002"); status != http.StatusOK {
		t.Errorf("identity added through the admin API: HTTP %d", status)
	}
	var counts countsReport
	if err := json.Unmarshal([]byte(admin(t, http.MethodGet, adminURL+"/counts", "")), &counts); err != nil {
		t.Fatal(err)
	}
	if counts.Requests["imds-token"] != 3 || counts.Statuses["imds-token"]["429"] != 1 {
		t.Errorf("counts %+v, want 3 IMDS requests, one of them 429", counts)
	}
	client.CloseIdleConnections()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after SIGTERM")
	}
	if !strings.Contains(logs.String(), "path=/metadata/identity/oauth2/token") {
		t.Errorf("requests are not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), token) || strings.Contains(logs.String(), "eyJ") {
		t.Error("a token reached the log")
	}
}

// Listening where other machines could connect is refused: the fake gives tokens to anyone who asks.
func TestRefusesNonLoopbackListeners(t *testing.T) {
	var logs bytes.Buffer
	err := run(context.Background(), []string{"--listen", "0.0.0.0:0", "--state-dir", t.TempDir()}, &logs)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("got %v, want a loopback refusal", err)
	}
}

func imdsToken(t *testing.T, client *http.Client, id string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://containerregistry.azure.net&client_id="+id, nil)
	req.Header.Set("Metadata", "true")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.AccessToken
}

func admin(t *testing.T, method, target, body string) string {
	t.Helper()
	req, _ := http.NewRequest(method, target, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: HTTP %d %s", method, target, resp.StatusCode, out.String())
	}
	return out.String()
}

func waitForFile(t *testing.T, path string, exited <-chan error) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if data, err := os.ReadFile(path); err == nil {
			return strings.TrimSpace(string(data))
		}
		select {
		case err := <-exited:
			t.Fatalf("the process exited before writing %s: %v", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s never appeared", path)
	return ""
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

// The example configuration shipped with the command is valid.
func TestExampleConfigApplies(t *testing.T) {
	cloud, err := azurefake.New(azurefake.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(cloud, filepath.Join("testdata", "example.json")); err != nil {
		t.Fatal(err)
	}
}
