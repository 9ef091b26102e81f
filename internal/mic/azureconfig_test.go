/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/azauth/armidentity"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
	"github.com/acrpull/acrpull/internal/mic"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func noEnv(string) string { return "" }

// An AKS azure.json, managed identity or service principal, maps to the credential upstream MIC used.
func TestAzureConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "azure.json")
	// AKS writes "msi" as client ID and secret with a managed identity; and keys match case-insensitively.
	writeFile(t, path, `{"cloud":"AzurePublicCloud","tenantId":"t","aadClientId":"msi","aadClientSecret":"msi",
		"subscriptionId":"s","resourceGroup":"MC_rg","vmType":"vmss","useManagedIdentityExtension":true,
		"UserAssignedIdentityID":"kubelet-client-id","location":"eastus","loadBalancerSku":"standard"}`)
	c, err := mic.LoadAzureConfig(path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.ARMSettings(noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Credential != (armidentity.Credential{ManagedIdentity: true, ClientID: "kubelet-client-id"}) || s.Cloud != azauth.PublicCloud || s.ARMEndpoint != "" {
		t.Errorf("settings %+v", s)
	}
	if c.ClusterIdentityClientID() != "kubelet-client-id" || c.SubscriptionID != "s" || c.VMType != "vmss" {
		t.Errorf("config %v", c)
	}

	writeFile(t, path, `{"cloud":"AzureUSGovernmentCloud","tenantId":"t","aadClientId":"sp","aadClientSecret":"hunter2"}`)
	if c, err = mic.LoadAzureConfig(path, noEnv); err != nil {
		t.Fatal(err)
	}
	if s, err = c.ARMSettings(noEnv); err != nil {
		t.Fatal(err)
	}
	if s.Credential != (armidentity.Credential{TenantID: "t", ClientID: "sp", ClientSecret: "hunter2"}) ||
		s.Cloud != azauth.USGovernmentCloud || s.ARMEndpoint != "https://management.usgovcloudapi.net/" {
		t.Errorf("settings %+v", s)
	}
	if c.ClusterIdentityClientID() != "" {
		t.Error("a service principal is no cluster identity on the nodes")
	}
	// Printing the configuration, however it is formatted, never shows the secret.
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		if out := fmt.Sprintf(format, c); strings.Contains(out, "hunter2") || !strings.Contains(out, "<redacted>") {
			t.Errorf("%s printed %s", format, out)
		}
	}
}

func TestAzureConfigFromEnvironment(t *testing.T) {
	env := map[string]string{"CLOUD": "AzureChinaCloud", "TENANT_ID": "t", "CLIENT_ID": "c", "CLIENT_SECRET": "x",
		"SUBSCRIPTION_ID": "s", "RESOURCE_GROUP": "rg", "VM_TYPE": "standard"}
	c, err := mic.LoadAzureConfig("", func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.ARMSettings(noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if s.Credential != (armidentity.Credential{TenantID: "t", ClientID: "c", ClientSecret: "x"}) || s.Cloud != azauth.ChinaCloud ||
		s.ARMEndpoint != "https://management.chinacloudapi.cn/" || c.ResourceGroup != "rg" || c.VMType != "standard" {
		t.Errorf("config %v settings %+v", c, s.Cloud)
	}

	env = map[string]string{"USE_MSI": "true"}
	if c, err = mic.LoadAzureConfig("", func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if s, err = c.ARMSettings(noEnv); err != nil || s.Credential != (armidentity.Credential{ManagedIdentity: true}) {
		t.Errorf("system-assigned identity: %+v %v", s.Credential, err)
	}
	env = map[string]string{"USE_MSI": "yes please"}
	if _, err := mic.LoadAzureConfig("", func(k string) string { return env[k] }); err == nil || !strings.Contains(err.Error(), "USE_MSI") {
		t.Errorf("USE_MSI not a boolean: %v", err)
	}
}

// A custom cloud comes from a go-autorest environment file, named by AZURE_ENVIRONMENT_FILEPATH.
func TestAzureStackEnvironmentFile(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "azurestackcloud.json")
	writeFile(t, envFile, `{"name":"AzureStackCloud","managementPortalURL":"https://portal.local.azurestack.external/",
		"resourceManagerEndpoint":"https://management.local.azurestack.external/",
		"activeDirectoryEndpoint":"https://login.microsoftonline.com/",
		"tokenAudience":"https://management.contoso.onmicrosoft.com/1234"}`)
	getenv := func(k string) string {
		if k == mic.EnvironmentFileVariable {
			return envFile
		}
		return ""
	}
	c := mic.AzureConfig{Cloud: "AzureStackCloud", UseManagedIdentityExtension: true}
	s, err := c.ARMSettings(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if s.ARMEndpoint != "https://management.local.azurestack.external/" || s.Cloud.AuthorityHost != "https://login.microsoftonline.com/" ||
		s.Cloud.ARMAudience != "https://management.contoso.onmicrosoft.com/1234" {
		t.Errorf("settings %+v", s)
	}
	if _, err := c.ARMSettings(noEnv); err == nil || !strings.Contains(err.Error(), mic.EnvironmentFileVariable) {
		t.Errorf("AzureStackCloud without the file: %v", err)
	}
	writeFile(t, envFile, `{"name":"AzureStackCloud","activeDirectoryEndpoint":"https://login.microsoftonline.com/"}`)
	if _, err := c.ARMSettings(getenv); err == nil || !strings.Contains(err.Error(), "resourceManagerEndpoint") {
		t.Errorf("environment file without resourceManagerEndpoint: %v", err)
	}
}

func TestIncompleteAzureConfigIsAClearError(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content string
		want    []string
	}{
		{`{"tenantId":"t","aadClientSecret":"hunter2"}`, []string{"aadClientId (CLIENT_ID)", "useManagedIdentityExtension"}},
		{`{}`, []string{"tenantId (TENANT_ID)", "aadClientId (CLIENT_ID)", "aadClientSecret (CLIENT_SECRET)"}},
		{`{"cloud":"AzureGermanCloud","useManagedIdentityExtension":true}`, []string{`cloud "AzureGermanCloud" is not known`}},
		{`{"aadClientSecret":"hunter2",`, []string{"not valid JSON"}},
		{`{"aadClientSecret":"hunter2","useManagedIdentityExtension":"hunter2"}`, []string{"useManagedIdentityExtension", "bool"}},
		{``, []string{"empty"}},
	} {
		path := filepath.Join(dir, "azure.json")
		writeFile(t, path, tc.content)
		c, err := mic.LoadAzureConfig(path, noEnv)
		if err == nil {
			_, err = c.ARMSettings(noEnv)
		}
		if err == nil {
			t.Errorf("%s: no error", tc.content)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %s", tc.content, err, w)
			}
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error %q shows the secret", tc.content, err)
		}
	}
	if _, err := mic.LoadAzureConfig(filepath.Join(dir, "absent.json"), noEnv); err == nil || !strings.Contains(err.Error(), "--cloudconfig") {
		t.Errorf("absent file: %v", err)
	}
}

// countingBuilder builds real ARM clients against the fake cloud and remembers the secrets they were built with.
type countingBuilder struct {
	mu      sync.Mutex
	secrets []string
	build   mic.ARMBuilder
}

func (b *countingBuilder) Build(s mic.ARMSettings) (mic.ARM, error) {
	b.mu.Lock()
	b.secrets = append(b.secrets, s.Credential.ClientSecret)
	b.mu.Unlock()
	return b.build(s)
}

func (b *countingBuilder) built() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.secrets...)
}

// A service principal's secret rotated in azure.json is used from the next call on, without a restart; a broken
// file keeps the last good client.
func TestReloadingARMUsesARotatedSecret(t *testing.T) {
	const spClientID = "00000000-0000-0000-0000-00000000a1c1"
	host := cloud.AddVMSS(subscription, nodeGroup, "pool-reload")
	rid := "/subscriptions/" + subscription + "/resourceGroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/reload-id"
	cloud.AddIdentity(azurefake.Identity{ClientID: "00000000-0000-0000-0000-00000000a1c2", ResourceID: rid, TenantID: tenantID})
	if err := cloud.AssignIdentities(host, rid); err != nil {
		t.Fatal(err)
	}
	cloud.AddIdentity(azurefake.Identity{ClientID: spClientID, TenantID: tenantID})
	cloud.AddClientSecret(spClientID, "first")

	path := filepath.Join(t.TempDir(), "azure.json")
	config := func(secret string) string {
		return fmt.Sprintf(`{"cloud":"AzurePublicCloud","tenantId":%q,"aadClientId":%q,"aadClientSecret":%q,"subscriptionId":%q}`,
			tenantID, spClientID, secret, subscription)
	}
	writeFile(t, path, config("first"))
	azure := azauth.NewClient(azauth.Options{HTTPClient: cloud.HTTPClient(), CallTimeout: 10 * time.Second})
	b := &countingBuilder{build: mic.ARMClientBuilder(azure, time.Second)}
	arm, err := mic.NewReloadingARM(path, noEnv, b.Build)
	if err != nil {
		t.Fatal(err)
	}
	arm.CheckEvery = 0 // check the file before every call
	ctx := context.Background()
	ids, err := arm.HostIdentities(ctx, host)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 1 || !strings.HasSuffix(ids[0], "/reload-id") {
		t.Errorf("identities %q", ids)
	}

	// The secret is rotated in Entra ID first: the running client keeps its token, the old secret gets no new one.
	cloud.AddClientSecret(spClientID, "second")
	stale, err := mic.ARMClientBuilder(azure, time.Second)(mic.ARMSettings{Cloud: azauth.PublicCloud,
		Credential: armidentity.Credential{TenantID: tenantID, ClientID: spClientID, ClientSecret: "first"}})
	if err != nil {
		t.Fatal(err)
	}
	if !refused(func() error { _, err := stale.HostIdentities(ctx, host); return err }) {
		t.Fatal("the fake cloud accepts the rotated-out secret; the test cannot tell the secrets apart")
	}
	// Then in azure.json: the next call rebuilds the client with it, and succeeds with a token for the new secret.
	writeFile(t, path, config("second"))
	if _, err := arm.HostIdentities(ctx, host); err != nil {
		t.Fatalf("with the rotated secret: %v", err)
	}
	if got := b.built(); len(got) != 2 || got[1] != "second" {
		t.Fatalf("clients built with secrets %q, want [first second]", got)
	}

	// The same content written again (a Secret's resync) builds nothing.
	writeFile(t, path, config("second"))
	if _, err := arm.HostIdentities(ctx, host); err != nil {
		t.Fatal(err)
	}
	// A half-written or incomplete file is reported and the last good client kept.
	for _, broken := range []string{`{"aadClientSecret":`, `{"tenantId":"` + tenantID + `"}`} {
		writeFile(t, path, broken)
		if _, err := arm.HostIdentities(ctx, host); err != nil {
			t.Fatalf("with a broken file %s, the last client should be kept: %v", broken, err)
		}
	}
	if got := b.built(); len(got) != 2 {
		t.Fatalf("clients built with secrets %q: unchanged or broken content must build none", got)
	}
	if !strings.Contains(output.String(), "The changed Azure configuration is not usable") {
		t.Error("a broken configuration file is not reported")
	}
	if strings.Contains(output.String(), "second") {
		t.Error("the log shows the secret")
	}

	// A wrong secret in the file is used as written: the file, not the old client, is the configuration.
	writeFile(t, path, config("wrong"))
	if !refused(func() error { _, err := arm.HostIdentities(ctx, host); return err }) {
		t.Fatal("a client built with a wrong secret succeeded")
	}
	writeFile(t, path, config("second"))
	if _, err := arm.HostIdentities(ctx, host); err != nil {
		t.Fatal(err)
	}
	if got := b.built(); len(got) != 4 || got[2] != "wrong" || got[3] != "second" {
		t.Fatalf("clients built with secrets %q", got)
	}
}

// refused reports whether an ARM call failed because Entra ID refused the controller's credential (classified as
// IdentityNotFound, with the AADSTS code and never the secret).
func refused(call func() error) bool {
	err := call()
	return err != nil && azauth.KindOf(err) == azauth.IdentityNotFound
}

// Between checks the file is not read at all.
func TestReloadingARMChecksAtMostEveryInterval(t *testing.T) {
	path := filepath.Join(t.TempDir(), "azure.json")
	writeFile(t, path, `{"useManagedIdentityExtension":true}`)
	builds := 0
	arm, err := mic.NewReloadingARM(path, noEnv, func(mic.ARMSettings) (mic.ARM, error) { builds++; return fakeARM{}, nil })
	if err != nil {
		t.Fatal(err)
	}
	arm.CheckEvery = time.Hour
	writeFile(t, path, `{"useManagedIdentityExtension":true,"userAssignedIdentityID":"other"}`)
	if _, err := arm.HostIdentities(context.Background(), "h"); err != nil || builds != 1 {
		t.Fatalf("within the interval: builds %d, err %v", builds, err)
	}
	arm.CheckEvery = 0
	if _, err := arm.HostIdentities(context.Background(), "h"); err != nil || builds != 2 {
		t.Fatalf("after the interval: builds %d, err %v", builds, err)
	}
	if _, err := mic.NewReloadingARM(filepath.Join(t.TempDir(), "absent"), noEnv, nil); err == nil {
		t.Error("an absent file at start is an error")
	}
}

type fakeARM struct{}

func (fakeARM) HostIdentities(context.Context, string) ([]string, error) { return nil, nil }
func (fakeARM) UpdateHostIdentities(context.Context, string, []string, []string, []string) error {
	return nil
}
