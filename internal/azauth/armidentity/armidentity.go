/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package armidentity reads and changes the user-assigned identities of VMs and VM scale sets through Azure Resource
// Manager: the assignment controller's (internal/mic) only use of ARM. It sits under azauth because it is Azure
// access (azauth's HTTP client, proxy, User-Agent, error kinds), and apart from it because only the assignment
// controller uses it: the binding controller and the node agent link azauth without the Resource Manager SDK
// (armcompute), which hack/verify.sh checks.
package armidentity

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v7"

	"github.com/acrpull/acrpull/internal/azauth"
)

// Endpoint kinds of Azure Resource Manager, as named in errors.
const (
	EndpointRead  = "arm-read"
	EndpointWrite = "arm-write"
)

// AssignDenied says ARM refused to assign identities the caller may not use (LinkedAuthorizationFailed), or that
// the managed identity service could not find (FailedIdentityOperation).
const AssignDenied azauth.FailureKind = "IdentityAssignDenied"

// HostDeleting says a VM or scale set is being deleted: its identities are not changed, as upstream's MIC left them.
const HostDeleting azauth.FailureKind = "HostDeleting"

// Credential is how the assignment controller signs in to Azure Resource Manager: a service principal with a
// secret, or a managed identity of the node it runs on (by client ID, or the system-assigned one).
type Credential struct {
	TenantID     string
	ClientID     string
	ClientSecret string
	// ManagedIdentity uses the instance metadata service; ClientID then names a user-assigned identity, if set.
	ManagedIdentity bool
}

// Client reads and changes the user-assigned identities of VMs and VM scale sets.
type Client struct {
	cred    azcore.TokenCredential
	options *arm.ClientOptions
	// identityTypes remembers each host's identity type from its last read, so an update keeps a system-assigned
	// identity and clears the type when the last user-assigned one goes.
	identityTypes sync.Map // host ID → armcompute.ResourceIdentityType
	// deleting holds the hosts whose last read showed provisioningState Deleting: a PATCH would only fail or race
	// the deletion, so updates skip them until a read shows another state.
	deleting  sync.Map // host ID → true
	pollEvery time.Duration
}

// New returns a client for the cloud's Resource Manager that makes its calls through azure's HTTP client, so the
// proxy, CA and User-Agent settings of the other Azure calls apply. pollEvery is how often a long-running update is
// polled (at least a second, the SDK's floor).
func New(azure *azauth.Client, azCloud azauth.Cloud, armEndpoint string, cred Credential, pollEvery time.Duration) (*Client, error) {
	cfg := cloud.AzurePublic
	cfg.ActiveDirectoryAuthorityHost = azCloud.AuthorityHost
	if armEndpoint != "" {
		// A custom cloud's ARM may take tokens for another audience than its endpoint (Azure Stack's tokenAudience).
		audience := armEndpoint
		if azCloud.ARMAudience != "" {
			audience = azCloud.ARMAudience
		}
		cfg.Services = map[cloud.ServiceName]cloud.ServiceConfiguration{
			cloud.ResourceManager: {Endpoint: armEndpoint, Audience: audience},
		}
	}
	opts := azure.SDKClientOptions(azCloud.AuthorityHost)
	opts.Cloud = cfg
	var (
		tc  azcore.TokenCredential
		err error
	)
	if cred.ManagedIdentity {
		miOpts := &azidentity.ManagedIdentityCredentialOptions{ClientOptions: azure.SDKClientOptions("")}
		if cred.ClientID != "" {
			miOpts.ID = azidentity.ClientID(cred.ClientID)
		}
		tc, err = azidentity.NewManagedIdentityCredential(miOpts)
	} else {
		tc, err = azidentity.NewClientSecretCredential(cred.TenantID, cred.ClientID, cred.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: opts, DisableInstanceDiscovery: true})
	}
	if err != nil {
		return nil, &azauth.Error{Kind: azauth.IdentityNotFound, Endpoint: azauth.EndpointEntra, Detail: "the controller's Azure credential is incomplete"}
	}
	return &Client{cred: tc, options: &arm.ClientOptions{ClientOptions: opts}, pollEvery: max(pollEvery, time.Second)}, nil
}

// armHost is a parsed VM or scale-set resource ID.
type armHost struct {
	subscription, group, name string
	scaleSet                  bool
}

func parseHost(id string) (armHost, error) {
	parts := strings.Split(strings.Trim(id, "/"), "/")
	if len(parts) != 8 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[2], "resourcegroups") ||
		!strings.EqualFold(parts[4], "providers") || !strings.EqualFold(parts[5], "Microsoft.Compute") ||
		slices.Contains(parts, "") {
		return armHost{}, fmt.Errorf("%q is not a VM or scale-set resource ID", id)
	}
	h := armHost{subscription: parts[1], group: parts[3], name: parts[7]}
	switch strings.ToLower(parts[6]) {
	case "virtualmachines":
	case "virtualmachinescalesets":
		h.scaleSet = true
	default:
		return armHost{}, fmt.Errorf("%q is not a VM or scale-set resource ID", id)
	}
	return h, nil
}

// HostIdentities returns the lowercased resource IDs of the user-assigned identities on a VM or scale set.
func (a *Client) HostIdentities(ctx context.Context, hostID string) ([]string, error) {
	h, err := parseHost(hostID)
	if err != nil {
		return nil, err
	}
	var identity *armcompute.ResourceIdentityType
	var assigned map[string]*armcompute.UserAssignedIdentitiesValue
	var state *string
	if h.scaleSet {
		c, err := armcompute.NewVirtualMachineScaleSetsClient(h.subscription, a.cred, a.options)
		if err != nil {
			return nil, err
		}
		resp, err := c.Get(ctx, h.group, h.name, nil)
		if err != nil {
			return nil, classifyARM(EndpointRead, err)
		}
		if resp.Identity != nil {
			identity, assigned = resp.Identity.Type, resp.Identity.UserAssignedIdentities
		}
		if resp.Properties != nil {
			state = resp.Properties.ProvisioningState
		}
	} else {
		c, err := armcompute.NewVirtualMachinesClient(h.subscription, a.cred, a.options)
		if err != nil {
			return nil, err
		}
		resp, err := c.Get(ctx, h.group, h.name, nil)
		if err != nil {
			return nil, classifyARM(EndpointRead, err)
		}
		if resp.Identity != nil {
			identity, assigned = resp.Identity.Type, resp.Identity.UserAssignedIdentities
		}
		if resp.Properties != nil {
			state = resp.Properties.ProvisioningState
		}
	}
	if state != nil && strings.EqualFold(*state, "Deleting") {
		a.deleting.Store(strings.ToLower(hostID), true)
	} else {
		a.deleting.Delete(strings.ToLower(hostID))
	}
	t := armcompute.ResourceIdentityTypeNone
	if identity != nil {
		t = *identity
	}
	a.identityTypes.Store(strings.ToLower(hostID), t)
	ids := make([]string, 0, len(assigned))
	for id := range assigned {
		ids = append(ids, strings.ToLower(id))
	}
	return ids, nil
}

// UpdateHostIdentities adds and removes user-assigned identities in one PATCH and waits for the operation. current
// is what HostIdentities last returned for the host; with it and the identity type that read saw, the PATCH keeps a
// system-assigned identity and sets the type by whether user-assigned ones remain, without reading the host again.
func (a *Client) UpdateHostIdentities(ctx context.Context, hostID string, current, add, remove []string) error {
	h, err := parseHost(hostID)
	if err != nil {
		return err
	}
	prev, ok := a.identityTypes.Load(strings.ToLower(hostID))
	if !ok {
		if current, err = a.HostIdentities(ctx, hostID); err != nil {
			return err
		}
		prev, _ = a.identityTypes.Load(strings.ToLower(hostID))
	}
	if _, gone := a.deleting.Load(strings.ToLower(hostID)); gone {
		return &azauth.Error{Kind: HostDeleting, Endpoint: EndpointWrite, Detail: "the VM or scale set is being deleted; its identities are left as they are"}
	}
	remaining := map[string]bool{}
	for _, id := range current {
		remaining[strings.ToLower(id)] = true
	}
	ids := map[string]*armcompute.UserAssignedIdentitiesValue{}
	for _, id := range remove {
		ids[id] = nil // null removes it
		delete(remaining, strings.ToLower(id))
	}
	for _, id := range add {
		ids[id] = &armcompute.UserAssignedIdentitiesValue{}
		remaining[strings.ToLower(id)] = true
	}
	system := strings.Contains(string(prev.(armcompute.ResourceIdentityType)), "SystemAssigned")
	var t armcompute.ResourceIdentityType
	switch {
	case system && len(remaining) > 0:
		t = armcompute.ResourceIdentityTypeSystemAssignedUserAssigned
	case system:
		t = armcompute.ResourceIdentityTypeSystemAssigned
	case len(remaining) > 0:
		t = armcompute.ResourceIdentityTypeUserAssigned
	default:
		t = armcompute.ResourceIdentityTypeNone
	}
	if t == armcompute.ResourceIdentityTypeNone || t == armcompute.ResourceIdentityTypeSystemAssigned {
		// ARM refuses user-assigned entries, even removals, with a type that has none.
		ids = nil
	}
	poll := &runtime.PollUntilDoneOptions{Frequency: a.pollEvery}
	if h.scaleSet {
		c, err := armcompute.NewVirtualMachineScaleSetsClient(h.subscription, a.cred, a.options)
		if err != nil {
			return err
		}
		poller, err := c.BeginUpdate(ctx, h.group, h.name, armcompute.VirtualMachineScaleSetUpdate{
			Identity: &armcompute.VirtualMachineScaleSetIdentity{Type: to.Ptr(t), UserAssignedIdentities: ids}}, nil)
		if err := awaitUpdate(ctx, poll, poller, err); err != nil {
			return err
		}
	} else {
		c, err := armcompute.NewVirtualMachinesClient(h.subscription, a.cred, a.options)
		if err != nil {
			return err
		}
		poller, err := c.BeginUpdate(ctx, h.group, h.name, armcompute.VirtualMachineUpdate{
			Identity: &armcompute.VirtualMachineIdentity{Type: to.Ptr(t), UserAssignedIdentities: ids}}, nil)
		if err := awaitUpdate(ctx, poll, poller, err); err != nil {
			return err
		}
	}
	a.identityTypes.Store(strings.ToLower(hostID), t)
	return nil
}

// awaitUpdate waits for a VM's or scale set's update that began with (poller, err) and classifies its failure.
func awaitUpdate[T any](ctx context.Context, poll *runtime.PollUntilDoneOptions, poller *runtime.Poller[T], err error) error {
	if err == nil {
		_, err = poller.PollUntilDone(ctx, poll)
	}
	if err != nil {
		return classifyARM(EndpointWrite, err)
	}
	return nil
}

// linkedScopes finds the identity IDs in LinkedAuthorizationFailed's message: "... on the linked scope(s) 'a,b' ...".
var linkedScopes = regexp.MustCompile(`linked scope\(s\) '([^']+)'`)

// quotedIdentityIDs finds each single-quoted user-assigned identity ID in FailedIdentityOperation's message, which
// relays the managed identity service's "Resource(s) 'a', 'b' not found." (the VM's own ID, also quoted there, is
// no identity's). Upstream's MIC took only the first quoted run; every ID named is dropped here.
var quotedIdentityIDs = regexp.MustCompile(`(?i)'(/subscriptions/[^/']+/resourcegroups/[^/']+/providers/microsoft\.managedidentity/userassignedidentities/[^/',\s]+)'`)

// classifyARM turns a Resource Manager failure into an azauth.Error: throttling with its Retry-After, assignment refusals
// with the refused identities, the rest by status.
func classifyARM(endpoint string, err error) error {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		// No answer from ARM: the controller's own sign-in failed (Entra refused its credential, or IMDS did), or
		// the connection did. Entra's classification says which, without quoting what it was sent.
		return azauth.SignInError(err)
	}
	e := &azauth.Error{Endpoint: endpoint, StatusCode: re.StatusCode, Code: re.ErrorCode}
	switch {
	case re.StatusCode == http.StatusTooManyRequests:
		e.Kind, e.Detail = azauth.Throttled, "Resource Manager is throttling the controller"
		e.RetryAfter = azauth.RetryAfterOfResponse(re.RawResponse)
	case re.ErrorCode == "LinkedAuthorizationFailed":
		e.Kind, e.Detail = AssignDenied, "the controller may not assign some identities"
		if m := linkedScopes.FindStringSubmatch(re.Error()); m != nil {
			for _, id := range strings.Split(m[1], ",") {
				if id = strings.TrimSpace(id); id != "" {
					e.Denied = append(e.Denied, strings.ToLower(id))
				}
			}
		}
	case re.ErrorCode == "FailedIdentityOperation":
		e.Kind, e.Detail = AssignDenied, "Resource Manager could not assign some identities (not found)"
		for _, m := range quotedIdentityIDs.FindAllStringSubmatch(re.Error(), -1) {
			if id := strings.ToLower(m[1]); !slices.Contains(e.Denied, id) {
				e.Denied = append(e.Denied, id)
			}
		}
	case re.StatusCode == http.StatusNotFound:
		e.Kind, e.Detail = azauth.IdentityNotFound, "the VM or scale set does not exist"
	case re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden:
		e.Kind, e.Detail = azauth.IdentityNotFound, "Resource Manager refused the controller's credential"
	default:
		e.Kind, e.Detail = azauth.Unavailable, "Resource Manager failed"
	}
	return e
}

// DeniedResourceIDsOf returns the identities ARM refused to assign, if err is such a refusal.
func DeniedResourceIDsOf(err error) []string {
	var e *azauth.Error
	if errors.As(err, &e) && e.Kind == AssignDenied {
		return e.Denied
	}
	return nil
}
