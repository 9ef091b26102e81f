/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// The fakeazure binary's JSON configuration reaches the same knobs as the Go API: identities, federated credentials
// with issuers trusted by a JWKS file (EC keys, as some clusters sign) or a PEM key, role assignments and faults.
func TestJSONConfig(t *testing.T) {
	undoFaults(t)
	dir := t.TempDir()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecdh, err := ecKey.PublicKey.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	point := ecdh.Bytes() // 0x04 || X || Y
	jwks := fmt.Sprintf(`{"keys":[{"kty":"EC","crv":"P-256","use":"sig","kid":"k1","x":%q,"y":%q}]}`,
		base64.RawURLEncoding.EncodeToString(point[1:33]), base64.RawURLEncoding.EncodeToString(point[33:]))
	writeFile(t, filepath.Join(dir, "jwks.json"), jwks)
	der, err := x509.MarshalPKIXPublicKey(&clusterKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "key.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))

	const app = "77777777-7777-4777-8777-777777777777"
	raw := fmt.Sprintf(`{
		"identities": [{"clientID": %q, "tenantID": %q, "assignedToVM": true}],
		"trustedIssuers": [{"issuer": "https://ec.cluster.test", "jwksFile": %q}, {"issuer": "https://pem.cluster.test", "publicKeyFile": %q}],
		"federatedCredentials": [
			{"clientID": %q, "issuer": "https://ec.cluster.test", "subject": "system:serviceaccount:a:b", "audiences": [%q]},
			{"clientID": %q, "issuer": "https://pem.cluster.test", "subject": "system:serviceaccount:a:b", "audiences": [%q]}],
		"roleAssignments": [{"clientID": %q, "host": %q, "repositories": ["alice"], "actions": ["pull"]}],
		"faults": {"imds-token": {"status": 503, "retryAfter": "2s", "count": 1}}
	}`, app, tenant, filepath.Join(dir, "jwks.json"), filepath.Join(dir, "key.pem"), app, audience, app, audience, app, host)
	var cfg azurefake.Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := fake.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}

	ecAssertion, err := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"iss": "https://ec.cluster.test", "sub": "system:serviceaccount:a:b", "aud": audience,
		"nbf": time.Now().Add(-time.Minute).Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	}).SignedString(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	pemAssertion := assertion(t, clusterKey, "https://pem.cluster.test", "system:serviceaccount:a:b", audience, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	for name, signed := range map[string]string{"JWKS (EC)": ecAssertion, "PEM (RSA)": pemAssertion} {
		if r := entraTokenRequest(t, tenant, app, signed); r.status != 200 {
			t.Errorf("issuer trusted by %s: HTTP %d %s", name, r.status, r.str("error_description"))
		}
	}
	if r := imds(t, "client_id="+app, true); r.status != 503 || r.header.Get("Retry-After") != "2" {
		t.Fatalf("first IMDS request: HTTP %d, Retry-After %q; want the configured 503", r.status, r.header.Get("Retry-After"))
	}
	if r := imds(t, "client_id="+app, true); r.status != 200 {
		t.Fatalf("after the counted fault: HTTP %d %s", r.status, r.raw)
	}
	if err := fake.ApplyConfig(azurefake.Config{Faults: map[azurefake.Endpoint]azurefake.FaultConfig{"nowhere": {Status: 500}}}); err == nil {
		t.Error("a fault for an unknown endpoint was accepted")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
