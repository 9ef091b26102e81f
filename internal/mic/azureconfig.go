/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package mic

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/azauth/armidentity"
)

// EnvironmentFileVariable names a go-autorest environment file, which describes a cloud with no built-in table (Azure
// Stack Hub): upstream MIC read it when the cloud is AzureStackCloud.
const EnvironmentFileVariable = "AZURE_ENVIRONMENT_FILEPATH"

// AzureConfig is upstream MIC's Azure configuration: the cloud provider's azure.json (--cloudconfig; AKS writes it
// to /etc/kubernetes/azure.json on every node), or the same settings from the environment. azure.json has many more
// fields; these are the ones MIC read.
type AzureConfig struct {
	Cloud                       string `json:"cloud"`
	TenantID                    string `json:"tenantId"`
	ClientID                    string `json:"aadClientId"`
	ClientSecret                string `json:"aadClientSecret"`
	SubscriptionID              string `json:"subscriptionId"`
	ResourceGroup               string `json:"resourceGroup"`
	VMType                      string `json:"vmType"`
	UseManagedIdentityExtension bool   `json:"useManagedIdentityExtension"`
	// UserAssignedIdentityID is the client ID of the managed identity the controller signs in as, with
	// UseManagedIdentityExtension; on AKS it is the kubelet identity, the cluster's own.
	UserAssignedIdentityID string `json:"userAssignedIdentityID"`
}

// String shows the configuration without the secret, so that logging a configuration, or an error quoting one, can
// never leak it.
func (c AzureConfig) String() string {
	secret := ""
	if c.ClientSecret != "" {
		secret = "<redacted>"
	}
	return fmt.Sprintf("{cloud:%q tenantId:%q aadClientId:%q aadClientSecret:%s subscriptionId:%q resourceGroup:%q vmType:%q useManagedIdentityExtension:%t userAssignedIdentityID:%q}",
		c.Cloud, c.TenantID, c.ClientID, secret, c.SubscriptionID, c.ResourceGroup, c.VMType, c.UseManagedIdentityExtension, c.UserAssignedIdentityID)
}

// GoString keeps %#v from printing the secret too.
func (c AzureConfig) GoString() string { return "mic.AzureConfig" + c.String() }

// ParseAzureConfig reads azure.json content. Keys match case-insensitively, as they did upstream (encoding/json).
func ParseAzureConfig(data []byte) (AzureConfig, error) {
	var c AzureConfig
	if len(bytes.TrimSpace(data)) == 0 {
		return c, errors.New("the Azure configuration file is empty")
	}
	if err := json.Unmarshal(data, &c); err != nil {
		// The decoder's message may quote the file's content, which holds the secret: say only where it failed.
		var syntax *json.SyntaxError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syntax):
			return c, fmt.Errorf("the Azure configuration file is not valid JSON (at byte %d)", syntax.Offset)
		case errors.As(err, &typeErr):
			return c, fmt.Errorf("the Azure configuration file's %q is not a %s", typeErr.Field, typeErr.Type)
		default:
			return c, errors.New("the Azure configuration file is not a JSON object")
		}
	}
	return c, nil
}

// AzureConfigFromEnv reads upstream MIC's environment variables, which it used when no --cloudconfig was given.
func AzureConfigFromEnv(getenv func(string) string) (AzureConfig, error) {
	c := AzureConfig{
		Cloud:                  getenv("CLOUD"),
		TenantID:               getenv("TENANT_ID"),
		ClientID:               getenv("CLIENT_ID"),
		ClientSecret:           getenv("CLIENT_SECRET"),
		SubscriptionID:         getenv("SUBSCRIPTION_ID"),
		ResourceGroup:          getenv("RESOURCE_GROUP"),
		VMType:                 getenv("VM_TYPE"),
		UserAssignedIdentityID: getenv("USER_ASSIGNED_MSI_CLIENT_ID"),
	}
	if v := getenv("USE_MSI"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return c, fmt.Errorf("USE_MSI=%q is not a boolean (true or false)", v)
		}
		c.UseManagedIdentityExtension = b
	}
	return c, nil
}

// LoadAzureConfig reads the Azure configuration from path, or from the environment when path is empty.
func LoadAzureConfig(path string, getenv func(string) string) (AzureConfig, error) {
	if path == "" {
		return AzureConfigFromEnv(getenv)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return AzureConfig{}, fmt.Errorf("reading the Azure configuration (--cloudconfig): %w", err)
	}
	c, err := ParseAzureConfig(data)
	if err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ARMSettings are what an ARM client is built from.
type ARMSettings struct {
	Cloud azauth.Cloud
	// ARMEndpoint is the cloud's Resource Manager; empty is the public cloud's.
	ARMEndpoint string
	Credential  armidentity.Credential
}

// knownClouds are go-autorest's environment names, which azure.json's "cloud" holds, compared case-insensitively as
// go-autorest did. AzureGermanCloud was retired in 2021 and is refused rather than guessed.
var knownClouds = map[string]struct {
	cloud azauth.Cloud
	arm   string
}{
	"AZUREPUBLICCLOUD":       {azauth.PublicCloud, ""},
	"AZURECLOUD":             {azauth.PublicCloud, ""},
	"AZUREUSGOVERNMENTCLOUD": {azauth.USGovernmentCloud, "https://management.usgovcloudapi.net/"},
	"AZUREUSGOVERNMENT":      {azauth.USGovernmentCloud, "https://management.usgovcloudapi.net/"},
	"AZURECHINACLOUD":        {azauth.ChinaCloud, "https://management.chinacloudapi.cn/"},
}

// ARMSettings checks the configuration and turns it into a cloud and a credential: a managed identity of the node
// (useManagedIdentityExtension; the user-assigned one named by userAssignedIdentityID, else the system-assigned one),
// or a service principal with a secret. getenv supplies AZURE_ENVIRONMENT_FILEPATH for AzureStackCloud.
func (c AzureConfig) ARMSettings(getenv func(string) string) (ARMSettings, error) {
	var s ARMSettings
	switch name := strings.ToUpper(strings.TrimSpace(c.Cloud)); {
	case name == "":
		s.Cloud = azauth.PublicCloud
	case name == "AZURESTACKCLOUD":
		path := getenv(EnvironmentFileVariable)
		if path == "" {
			return s, fmt.Errorf("cloud %q needs %s, the path of its environment file", c.Cloud, EnvironmentFileVariable)
		}
		var err error
		if s.Cloud, s.ARMEndpoint, err = readEnvironmentFile(path); err != nil {
			return s, err
		}
	default:
		known, ok := knownClouds[name]
		if !ok {
			return s, fmt.Errorf("cloud %q is not known: use AzurePublicCloud, AzureUSGovernmentCloud or AzureChinaCloud, or AzureStackCloud with %s",
				c.Cloud, EnvironmentFileVariable)
		}
		s.Cloud, s.ARMEndpoint = known.cloud, known.arm
	}

	if c.UseManagedIdentityExtension {
		// AKS writes aadClientId and aadClientSecret "msi" with a managed identity: they mean nothing then.
		s.Credential = armidentity.Credential{ManagedIdentity: true, ClientID: c.UserAssignedIdentityID}
		return s, nil
	}
	var missing []string
	for _, f := range []struct{ value, name string }{
		{c.TenantID, "tenantId (TENANT_ID)"}, {c.ClientID, "aadClientId (CLIENT_ID)"}, {c.ClientSecret, "aadClientSecret (CLIENT_SECRET)"},
	} {
		if strings.TrimSpace(f.value) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return s, fmt.Errorf("the Azure configuration names no usable credential: a service principal needs %s, or set useManagedIdentityExtension (USE_MSI) to use the node's managed identity",
			strings.Join(missing, ", "))
	}
	s.Credential = armidentity.Credential{TenantID: c.TenantID, ClientID: c.ClientID, ClientSecret: c.ClientSecret}
	return s, nil
}

// ClusterIdentityClientID is the client ID of the cluster's own identity, which no pod may take away from the nodes:
// the user-assigned identity the controller signs in as (on AKS, the kubelet identity).
func (c AzureConfig) ClusterIdentityClientID() string {
	if c.UseManagedIdentityExtension {
		return c.UserAssignedIdentityID
	}
	return ""
}

// environmentFile is the part of a go-autorest environment file acrpull uses.
type environmentFile struct {
	Name                    string `json:"name"`
	ResourceManagerEndpoint string `json:"resourceManagerEndpoint"`
	ActiveDirectoryEndpoint string `json:"activeDirectoryEndpoint"`
	TokenAudience           string `json:"tokenAudience"`
}

func readEnvironmentFile(path string) (azauth.Cloud, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return azauth.Cloud{}, "", fmt.Errorf("reading the cloud's environment file (%s): %w", EnvironmentFileVariable, err)
	}
	var f environmentFile
	if err := json.Unmarshal(data, &f); err != nil {
		return azauth.Cloud{}, "", fmt.Errorf("the cloud's environment file %s is not a JSON object: %w", path, err)
	}
	for _, e := range []struct{ value, name string }{
		{f.ActiveDirectoryEndpoint, "activeDirectoryEndpoint"}, {f.ResourceManagerEndpoint, "resourceManagerEndpoint"},
	} {
		u, err := url.Parse(e.value)
		if e.value == "" || err != nil || u.Scheme != "https" || u.Host == "" {
			return azauth.Cloud{}, "", fmt.Errorf("the cloud's environment file %s needs %s, an https URL (got %q)", path, e.name, e.value)
		}
	}
	audience := f.TokenAudience
	if audience == "" {
		audience = f.ResourceManagerEndpoint
	}
	return azauth.Cloud{AuthorityHost: f.ActiveDirectoryEndpoint, ARMAudience: audience}, f.ResourceManagerEndpoint, nil
}

// ARMBuilder builds an ARM client from settings.
type ARMBuilder func(ARMSettings) (ARM, error)

// ARMClientBuilder builds Resource Manager clients (armidentity) that make their calls through c, polling
// long-running updates every pollEvery.
func ARMClientBuilder(c *azauth.Client, pollEvery time.Duration) ARMBuilder {
	return func(s ARMSettings) (ARM, error) {
		a, err := armidentity.New(c, s.Cloud, s.ARMEndpoint, s.Credential, pollEvery)
		if err != nil {
			return nil, err
		}
		return a, nil
	}
}

// ReloadingARM is the controller's ARM when its configuration comes from a file: before a call, at most every
// CheckEvery, it hashes the file and, if the content changed, builds a new client from it. A rotated secret is thus
// used without a restart, as upstream's fsnotify watch did. Content is compared rather than file events watched
// because a mounted Secret changes by an atomic symlink swap, which a watch on the file itself does not see.
//
// A file that no longer reads or parses, or names no usable credential, is reported and the last good client kept:
// a half-written file must not stop assignment.
type ReloadingARM struct {
	path   string
	getenv func(string) string
	build  ARMBuilder
	// CheckEvery bounds how often the file is read; 0 reads it before every call.
	CheckEvery time.Duration
	Clock      clock.PassiveClock

	mu        sync.Mutex
	current   ARM
	sum       [sha256.Size]byte
	lastCheck time.Time
	// failed is the hash of a content that failed, reported once rather than on every call.
	failed [sha256.Size]byte
}

// NewReloadingARM loads the configuration file and builds the first client; a configuration that fails here is an
// error, since there is no earlier client to keep.
func NewReloadingARM(path string, getenv func(string) string, build ARMBuilder) (*ReloadingARM, error) {
	r := &ReloadingARM{path: path, getenv: getenv, build: build, CheckEvery: 5 * time.Second, Clock: clock.RealClock{}}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the Azure configuration (--cloudconfig): %w", err)
	}
	a, err := r.load(data)
	if err != nil {
		return nil, err
	}
	r.current, r.sum, r.lastCheck = a, sha256.Sum256(data), r.Clock.Now()
	return r, nil
}

func (r *ReloadingARM) load(data []byte) (ARM, error) {
	c, err := ParseAzureConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.path, err)
	}
	s, err := c.ARMSettings(r.getenv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.path, err)
	}
	a, err := r.build(s)
	if err != nil {
		return nil, fmt.Errorf("%s: building the Resource Manager client: %w", r.path, err)
	}
	return a, nil
}

// client returns the client to use, reloading the file first when a check is due.
func (r *ReloadingARM) client(ctx context.Context) ARM {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.Clock.Now()
	if r.CheckEvery > 0 && now.Sub(r.lastCheck) < r.CheckEvery {
		return r.current
	}
	r.lastCheck = now
	log := ctrl.LoggerFrom(ctx).WithValues("cloudconfig", r.path)
	data, err := os.ReadFile(r.path)
	if err != nil {
		log.Error(err, "Cannot read the Azure configuration; keeping the last one")
		return r.current
	}
	sum := sha256.Sum256(data)
	if sum == r.sum || sum == r.failed {
		return r.current
	}
	a, err := r.load(data)
	if err != nil {
		r.failed = sum
		log.Error(err, "The changed Azure configuration is not usable; keeping the last one")
		return r.current
	}
	r.current, r.sum, r.failed = a, sum, [sha256.Size]byte{}
	log.Info("Azure configuration changed: Resource Manager client rebuilt")
	return r.current
}

// HostIdentities implements ARM with the current client.
func (r *ReloadingARM) HostIdentities(ctx context.Context, hostID string) ([]string, error) {
	return r.client(ctx).HostIdentities(ctx, hostID)
}

// UpdateHostIdentities implements ARM with the current client.
func (r *ReloadingARM) UpdateHostIdentities(ctx context.Context, hostID string, current, add, remove []string) error {
	return r.client(ctx).UpdateHostIdentities(ctx, hostID, current, add, remove)
}
