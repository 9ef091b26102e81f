/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// The Azure Resource Manager endpoints, for counters and faults: reads (GET, operation polls included) and writes
// (PATCH), which ARM throttles separately.
const (
	ARMRead  Endpoint = "arm-read"
	ARMWrite Endpoint = "arm-write"
)

// Resource kinds ARMCount distinguishes: ARM's resource type names, and "operations" for long-running operation
// status polls.
const (
	ARMKindVM        = "virtualMachines"
	ARMKindVMSS      = "virtualMachineScaleSets"
	ARMKindOperation = "operations"
)

// DefaultARMLocation is where AddVM and AddVMSS put resources; it shows in operation URLs and errors only.
const DefaultARMLocation = "eastus"

// armHost is one cloud's Resource Manager: the audiences its tokens must carry and the authority its 401s name.
type armHost struct {
	audiences []string
	authority string
}

// armHosts are the public and sovereign clouds' Resource Manager hosts. ARM accepts tokens for its own URL and for
// the legacy Service Management one, with or without the trailing slash.
var armHosts = map[string]armHost{
	"management.azure.com": {
		audiences: []string{"https://management.azure.com", "https://management.core.windows.net"},
		authority: "https://login.windows.net/",
	},
	"management.usgovcloudapi.net": {
		audiences: []string{"https://management.usgovcloudapi.net", "https://management.core.usgovcloudapi.net"},
		authority: "https://login.microsoftonline.us/",
	},
	"management.chinacloudapi.cn": {
		audiences: []string{"https://management.chinacloudapi.cn", "https://management.core.chinacloudapi.cn"},
		authority: "https://login.chinacloudapi.cn/",
	},
}

func isARMHost(host string) bool {
	_, ok := armHosts[host]
	return ok
}

// computeAPIVersions are the Microsoft.Compute api-versions the fake answers: 2019-12-01, which aad-pod-identity's
// MIC pinned, and the later stable ones up to a current SDK's.
var computeAPIVersions = []string{
	"2019-12-01", "2020-06-01", "2020-12-01", "2021-03-01", "2021-07-01", "2021-11-01", "2022-03-01", "2022-08-01",
	"2022-11-01", "2023-03-01", "2023-07-01", "2023-09-01", "2024-03-01", "2024-07-01", "2024-11-01", "2025-04-01",
}

// The remaining-request headers ARM sends when the fake sets no rate: its hourly subscription budgets less one.
const (
	armDefaultRemainingReads  = 11999
	armDefaultRemainingWrites = 1199
)

// userAssignedIDPattern is the shape ARM requires of a key of identity.userAssignedIdentities.
var userAssignedIDPattern = regexp.MustCompile(`(?i)^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.managedidentity/userassignedidentities/[^/]+$`)

// assignedIdentity is one entry of identity.userAssignedIdentities. Client and principal IDs are captured when the
// identity is assigned, as ARM does: an identity deleted and recreated under the same name keeps the stale ones.
type assignedIdentity struct {
	resourceID, clientID, principalID string
}

// armIdentity is a resource's identity block.
type armIdentity struct {
	system                bool
	principalID, tenantID string // of the system-assigned identity
	user                  []assignedIdentity
}

func (id armIdentity) clone() armIdentity {
	id.user = slices.Clone(id.user)
	return id
}

// typeName is identity.type as ARM spells it; both kinds are joined by ", ".
func (id armIdentity) typeName() string {
	switch {
	case id.system && len(id.user) > 0:
		return "SystemAssigned, UserAssigned"
	case id.system:
		return "SystemAssigned"
	case len(id.user) > 0:
		return "UserAssigned"
	}
	return "None"
}

func (id armIdentity) view() map[string]any {
	out := map[string]any{"type": id.typeName()}
	if id.system {
		out["principalId"], out["tenantId"] = id.principalID, id.tenantID
	}
	if len(id.user) > 0 {
		users := map[string]any{}
		for _, u := range id.user {
			users[u.resourceID] = map[string]string{"principalId": u.principalID, "clientId": u.clientID}
		}
		out["userAssignedIdentities"] = users
	}
	return out
}

func (id armIdentity) userIndex(resourceID string) int {
	return slices.IndexFunc(id.user, func(u assignedIdentity) bool { return strings.EqualFold(u.resourceID, resourceID) })
}

// armResource is a virtual machine or a scale set.
type armResource struct {
	kind, id, subscription, resourceGroup, name, location string
	uniqueID                                              string
	identity                                              armIdentity // as committed: what GET and IMDS see
	provisioningState                                     string
	pending                                               string // ID of the operation in progress, if any
}

// armOperation is a long-running update: it commits its identity to the resource once done.
type armOperation struct {
	id, resource, subscription string
	identity                   armIdentity
	started, done              time.Time
	succeeded                  bool
}

// armState is the Resource Manager's world. It has its own lock; when a path needs both, it takes this one first
// and Cloud.mu second.
type armState struct {
	mu         sync.Mutex
	resources  map[string]*armResource  // by lower-case resource ID
	groups     map[string]bool          // lower-case "/subscriptions/{s}/resourcegroups/{rg}" holding a resource
	operations map[string]*armOperation // by operation ID
	// denied maps a lower-case identity resource ID to the lower-case client IDs that may not assign it; "*" is
	// every caller.
	denied   map[string]map[string]bool
	delay    time.Duration
	reads    float64
	writes   float64
	limiters map[string]*rate.Limiter // caller client ID + "/read" or "/write"
	nodes    map[string]string        // source IP → lower-case VM or scale set resource ID
	clients  sync.Map                 // source IP → *http.Transport, for HTTPClientFrom
}

// init makes the maps; called with mu held.
func (st *armState) init() {
	if st.resources == nil {
		st.resources, st.groups, st.operations = map[string]*armResource{}, map[string]bool{}, map[string]*armOperation{}
		st.denied, st.limiters, st.nodes = map[string]map[string]bool{}, map[string]*rate.Limiter{}, map[string]string{}
	}
}

// settle commits the operations that are done by now; called with mu held. Commitment is lazy, at the next read of
// the state, so that no timer outlives a test.
func (st *armState) settle(now time.Time) {
	for _, op := range st.operations {
		if op.succeeded || now.Before(op.done) {
			continue
		}
		op.succeeded = true
		if res := st.resources[op.resource]; res != nil && res.pending == op.id {
			res.identity, res.provisioningState, res.pending = op.identity, "Succeeded", ""
		}
	}
}

func computeResourceID(subscription, resourceGroup, kind, name string) string {
	return "/subscriptions/" + subscription + "/resourceGroups/" + resourceGroup + "/providers/Microsoft.Compute/" + kind + "/" + name
}

// AddVM adds a virtual machine with no identity (or resets one) and returns its resource ID. Subscription, resource
// group and name compare case-insensitively, as ARM's do.
func (c *Cloud) AddVM(subscription, resourceGroup, name string) string {
	return c.addComputeResource(ARMKindVM, subscription, resourceGroup, name)
}

// AddVMSS adds a virtual machine scale set with no identity (or resets one) and returns its resource ID. Nodes of its
// instances are placed with PlaceNode, by the scale set's ID or an instance's (…/virtualMachines/{n}).
func (c *Cloud) AddVMSS(subscription, resourceGroup, name string) string {
	return c.addComputeResource(ARMKindVMSS, subscription, resourceGroup, name)
}

func (c *Cloud) addComputeResource(kind, subscription, resourceGroup, name string) string {
	id := computeResourceID(subscription, resourceGroup, kind, name)
	st := &c.arm
	st.mu.Lock()
	defer st.mu.Unlock()
	st.init()
	st.resources[strings.ToLower(id)] = &armResource{
		kind: kind, id: id, subscription: subscription, resourceGroup: resourceGroup, name: name,
		location: DefaultARMLocation, uniqueID: newGUID(), provisioningState: "Succeeded",
	}
	st.groups[strings.ToLower("/subscriptions/"+subscription+"/resourceGroups/"+resourceGroup)] = true
	return id
}

// AssignIdentities assigns user-assigned identities to a VM or scale set at once, with no operation and no
// authorization check: what an administrator did beforehand (a kubelet identity, for instance). Every identity must
// have been added with AddIdentity and a ResourceID.
func (c *Cloud) AssignIdentities(resourceID string, identityResourceIDs ...string) error {
	assigned := make([]assignedIdentity, 0, len(identityResourceIDs))
	for _, rid := range identityResourceIDs {
		id, ok := c.identityByResourceID(rid)
		if !ok {
			return fmt.Errorf("assigning %s to %s: no identity has that resource ID", rid, resourceID)
		}
		assigned = append(assigned, assignedIdentity{resourceID: rid, clientID: id.ClientID, principalID: id.PrincipalID})
	}
	return c.withResource(resourceID, func(res *armResource) {
		for _, a := range assigned {
			if res.identity.userIndex(a.resourceID) < 0 {
				res.identity.user = append(res.identity.user, a)
			}
		}
	})
}

// withResource runs fn on a VM or scale set as it stands now (finished operations applied), under the ARM lock.
func (c *Cloud) withResource(resourceID string, fn func(*armResource)) error {
	st := &c.arm
	st.mu.Lock()
	defer st.mu.Unlock()
	st.init()
	st.settle(time.Now())
	res := st.resources[strings.ToLower(resourceID)]
	if res == nil {
		return fmt.Errorf("%s: no such VM or scale set", resourceID)
	}
	fn(res)
	return nil
}

// AssignedIdentities lists the resource IDs of the user-assigned identities a VM or scale set holds, as GET shows
// them: an update in progress is not there yet.
func (c *Cloud) AssignedIdentities(resourceID string) ([]string, error) {
	var out []string
	err := c.withResource(resourceID, func(res *armResource) {
		out = make([]string, 0, len(res.identity.user))
		for _, u := range res.identity.user {
			out = append(out, u.resourceID)
		}
	})
	return out, err
}

// DenyAssign makes ARM refuse to assign an identity (by resource ID) for the listed callers (client IDs), or for
// every caller when none is listed, with 403 LinkedAuthorizationFailed: what a caller without Managed Identity
// Operator on the identity gets.
func (c *Cloud) DenyAssign(identityResourceID string, callerClientIDs ...string) {
	st := &c.arm
	st.mu.Lock()
	defer st.mu.Unlock()
	st.init()
	key := strings.ToLower(identityResourceID)
	if st.denied[key] == nil {
		st.denied[key] = map[string]bool{}
	}
	if len(callerClientIDs) == 0 {
		st.denied[key]["*"] = true
	}
	for _, caller := range callerClientIDs {
		st.denied[key][strings.ToLower(caller)] = true
	}
}

// AllowAssign lifts every denial DenyAssign set on an identity, as granting the role does.
func (c *Cloud) AllowAssign(identityResourceID string) {
	st := &c.arm
	st.mu.Lock()
	defer st.mu.Unlock()
	st.init()
	delete(st.denied, strings.ToLower(identityResourceID))
}

// SetARMOperationDelay sets how long updates accepted from now on stay in progress (their operation InProgress,
// the resource Updating) before they succeed. Zero, the default, lets them succeed at the next look; real ones take
// 10–20 s on a VM and 40–60 s or more on a scale set.
func (c *Cloud) SetARMOperationDelay(d time.Duration) {
	st := &c.arm
	st.mu.Lock()
	defer st.mu.Unlock()
	st.delay = d
}

// SetARMRateLimit throttles each caller above reads and writes requests per second (zero: no limit), with ARM's
// 429 SubscriptionRequestsThrottled and Retry-After. Reads include operation polls.
func (c *Cloud) SetARMRateLimit(reads, writes float64) {
	st := &c.arm
	st.mu.Lock()
	defer st.mu.Unlock()
	st.init()
	st.reads, st.writes = reads, writes
	clear(st.limiters)
}

// ARMCount is how many requests Resource Manager received with the method for a kind of resource (ARMKindVM,
// ARMKindVMSS, ARMKindOperation) since the last reset, refused, throttled and faulted ones included.
func (c *Cloud) ARMCount(method, kind string) int64 {
	if v, ok := c.byARM.Load(armCountKey(method, kind)); ok {
		return v.(*atomic.Int64).Load()
	}
	return 0
}

func armCountKey(method, kind string) string {
	return strings.ToUpper(method) + " " + strings.ToLower(kind)
}

func (c *Cloud) identityByResourceID(resourceID string) (Identity, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, id := range c.identities {
		if id.ResourceID != "" && strings.EqualFold(id.ResourceID, resourceID) {
			return id, true
		}
	}
	return Identity{}, false
}

// armError writes ARM's error shape.
func armError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": message}})
}

// armCaller is who a bearer token says is calling.
type armCaller struct {
	clientID, objectID, tenantID string
}

// armRoute is what a Resource Manager path names.
type armRoute struct {
	kind         string // ARMKindVM, ARMKindVMSS or ARMKindOperation
	subscription string
	group, name  string // of a resource
	operation    string // of an operation
}

// parseARMPath reads /subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.Compute/{kind}/{name} and
// /subscriptions/{s}/providers/Microsoft.Compute/locations/{location}/operations/{id}; ARM compares the fixed
// segments case-insensitively.
func parseARMPath(path string) (armRoute, bool) {
	p := strings.Split(strings.Trim(path, "/"), "/")
	is := func(i int, s string) bool { return strings.EqualFold(p[i], s) }
	switch {
	case len(p) == 8 && is(0, "subscriptions") && is(2, "resourceGroups") && is(4, "providers") && is(5, "Microsoft.Compute") &&
		(is(6, ARMKindVM) || is(6, ARMKindVMSS)):
		kind := ARMKindVM
		if is(6, ARMKindVMSS) {
			kind = ARMKindVMSS
		}
		return armRoute{kind: kind, subscription: p[1], group: p[3], name: p[7]}, true
	case len(p) == 8 && is(0, "subscriptions") && is(2, "providers") && is(3, "Microsoft.Compute") && is(4, "locations") && is(6, "operations"):
		return armRoute{kind: ARMKindOperation, subscription: p[1], operation: p[7]}, true
	}
	return armRoute{}, false
}

// serveARM answers Resource Manager for virtual machines and scale sets: GET and PATCH of their identity, and the
// status of the long-running operations PATCH starts. Checks run in ARM's order: authentication, throttling,
// api-version, resource group, then the compute provider's own checks.
func (c *Cloud) serveARM(w http.ResponseWriter, r *http.Request, host string) {
	w.Header().Set("x-ms-request-id", newGUID())
	w.Header().Set("x-ms-correlation-request-id", newGUID())
	route, ok := parseARMPath(r.URL.Path)
	if !ok {
		armError(w, http.StatusNotFound, "InvalidResourceType", "The resource type could not be found in the namespace for api version '"+r.URL.Query().Get("api-version")+"'.")
		return
	}
	write := r.Method != http.MethodGet && r.Method != http.MethodHead
	increment(&c.byARM, armCountKey(r.Method, route.kind))
	ep := ARMRead
	if write {
		ep = ARMWrite
	}
	if !c.armEndpoint(ep, w, r) {
		return
	}
	caller, ok := c.armAuthenticate(w, r, host)
	if !ok {
		return
	}
	if !c.armAdmit(w, caller, route.subscription, write) {
		return
	}
	version := r.URL.Query().Get("api-version")
	if version == "" {
		armError(w, http.StatusBadRequest, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
		return
	}
	typeName := "virtualMachines"
	if route.kind != ARMKindOperation {
		typeName = route.kind
	}
	if !slices.Contains(computeAPIVersions, version) {
		armError(w, http.StatusBadRequest, "NoRegisteredProviderFound", fmt.Sprintf(
			"No registered resource provider found for location '%s' and API version '%s' for type '%s'. The supported api-versions are '%s'. The supported locations are '%s'.",
			DefaultARMLocation, version, typeName, strings.Join(computeAPIVersions, ", "), DefaultARMLocation))
		return
	}
	switch {
	case route.kind == ARMKindOperation && r.Method == http.MethodGet:
		c.armOperationStatus(w, r, route)
	case route.kind != ARMKindOperation && r.Method == http.MethodGet:
		c.armGet(w, route)
	case route.kind != ARMKindOperation && r.Method == http.MethodPatch:
		c.armPatch(w, r, host, route, caller, version)
	default:
		armError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "The fake Resource Manager serves GET and PATCH of virtual machines and scale sets, and GET of operations; not "+r.Method+".")
	}
}

// armEndpoint is Cloud.endpoint with ARM's error shape for faults that bring no body.
func (c *Cloud) armEndpoint(ep Endpoint, w http.ResponseWriter, r *http.Request) bool {
	c.byEndpoint[ep].Add(1)
	if rw, ok := w.(*recordingWriter); ok {
		rw.endpoint = ep
	}
	f, ok := c.activeFault(ep)
	if !ok {
		return true
	}
	if f.Status != 0 && f.Body == "" {
		code := "InternalServerError"
		switch {
		case f.Status == http.StatusTooManyRequests:
			code = "TooManyRequests"
		case f.Status < 500:
			code = "BadRequest"
		}
		body, _ := json.Marshal(map[string]any{"error": map[string]string{
			"code": code, "message": fmt.Sprintf("injected HTTP %d: %s", f.Status, http.StatusText(f.Status)),
		}})
		f.Body = string(body)
	}
	return !answerFault(ep, f, w, r)
}

// armAuthenticate checks the bearer token as ARM does: issued by this cloud's Entra ID (or IMDS), unexpired, for
// this cloud's Resource Manager. Failures are 401 with a WWW-Authenticate challenge naming the authority.
func (c *Cloud) armAuthenticate(w http.ResponseWriter, r *http.Request, host string) (armCaller, bool) {
	arm := armHosts[host]
	fail := func(code, message, description string) (armCaller, bool) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer authorization_uri=%q, error="invalid_token", error_description=%q`, arm.authority, description))
		armError(w, http.StatusUnauthorized, code, message)
		return armCaller{}, false
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return fail("AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.",
			"The authentication failed because of missing 'Authorization' header.")
	}
	scheme, raw, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return fail("AuthenticationFailed", "Authentication failed. The 'Authorization' header is provided in an invalid format.",
			"The authentication failed because of invalid 'Authorization' header.")
	}
	claims, err := c.parseEntra(strings.TrimSpace(raw))
	if errors.Is(err, jwt.ErrTokenExpired) {
		exp, _ := claims.GetExpirationTime()
		var expired time.Time
		if exp != nil {
			expired = exp.UTC()
		}
		return fail("ExpiredAuthenticationToken", fmt.Sprintf("The access token expiry UTC time '%s' is earlier than current UTC time '%s'.",
			expired.Format("1/2/2006 3:04:05 PM"), time.Now().UTC().Format("1/2/2006 3:04:05 PM")), "The access token has expired.")
	}
	if err != nil {
		return fail("InvalidAuthenticationToken", "The access token is invalid.", "The access token is invalid.")
	}
	audiences, _ := claims.GetAudience()
	if !slices.ContainsFunc(audiences, func(a string) bool {
		return slices.ContainsFunc(arm.audiences, func(want string) bool { return strings.EqualFold(strings.TrimSuffix(a, "/"), want) })
	}) {
		var allowed []string
		for _, a := range arm.audiences {
			allowed = append(allowed, "'"+a+"/'", "'"+a+"'")
		}
		return fail("InvalidAuthenticationTokenAudience", fmt.Sprintf(
			"The access token has been obtained for wrong audience or resource '%s'. It should exactly match with one of the allowed audiences %s.",
			strings.Join(audiences, ","), strings.Join(allowed, ",")), "The access token has been obtained for wrong audience or resource.")
	}
	str := func(k string) string { s, _ := claims[k].(string); return s }
	return armCaller{clientID: str("appid"), objectID: str("oid"), tenantID: str("tid")}, true
}

// armAdmit applies the per-caller rate and sets ARM's remaining-requests header; above the rate it answers 429 with
// Retry-After in seconds, as ARM's subscription throttling does.
func (c *Cloud) armAdmit(w http.ResponseWriter, caller armCaller, subscription string, write bool) bool {
	kind, header, fallback := "read", "x-ms-ratelimit-remaining-subscription-reads", armDefaultRemainingReads
	if write {
		kind, header, fallback = "write", "x-ms-ratelimit-remaining-subscription-writes", armDefaultRemainingWrites
	}
	st := &c.arm
	st.mu.Lock()
	st.init()
	limit := st.reads
	if write {
		limit = st.writes
	}
	if limit <= 0 {
		st.mu.Unlock()
		w.Header().Set(header, strconv.Itoa(fallback))
		return true
	}
	key := strings.ToLower(caller.clientID) + "/" + kind
	lim := st.limiters[key]
	if lim == nil {
		lim = rate.NewLimiter(rate.Limit(limit), max(1, int(limit)))
		st.limiters[key] = lim
	}
	now := time.Now()
	res := lim.ReserveN(now, 1)
	delay := res.DelayFrom(now)
	if delay > 0 {
		res.CancelAt(now)
	}
	remaining := max(0, int(lim.TokensAt(now)))
	st.mu.Unlock()
	w.Header().Set(header, strconv.Itoa(remaining))
	if delay <= 0 {
		return true
	}
	secs := int((delay + time.Second - 1) / time.Second)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	armError(w, http.StatusTooManyRequests, "SubscriptionRequestsThrottled", fmt.Sprintf(
		"Number of '%s' requests for subscription '%s' actor '%s' exceeded. Please try again after '%d' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
		kind, subscription, caller.objectID, secs))
	return false
}

// lookup finds the route's resource, answering ARM's 404s when there is none: ResourceGroupNotFound from ARM itself,
// ResourceNotFound from the provider. Called with mu held.
func (st *armState) lookup(w http.ResponseWriter, route armRoute) *armResource {
	st.init()
	if !st.groups[strings.ToLower("/subscriptions/"+route.subscription+"/resourceGroups/"+route.group)] {
		armError(w, http.StatusNotFound, "ResourceGroupNotFound", fmt.Sprintf("Resource group '%s' could not be found.", route.group))
		return nil
	}
	res := st.resources[strings.ToLower(computeResourceID(route.subscription, route.group, route.kind, route.name))]
	if res == nil {
		armError(w, http.StatusNotFound, "ResourceNotFound", fmt.Sprintf(
			"The Resource 'Microsoft.Compute/%s/%s' under resource group '%s' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
			route.kind, route.name, route.group))
	}
	return res
}

// view is the resource as ARM returns it, with the given identity and provisioning state.
func (res *armResource) view(identity armIdentity, state string) map[string]any {
	out := map[string]any{
		"id": res.id, "name": res.name, "type": "Microsoft.Compute/" + res.kind, "location": res.location,
		"identity": identity.view(),
	}
	if res.kind == ARMKindVM {
		out["properties"] = map[string]any{"provisioningState": state, "vmId": res.uniqueID}
	} else {
		out["sku"] = map[string]any{"name": "Standard_D2s_v3", "tier": "Standard", "capacity": 3}
		out["properties"] = map[string]any{"provisioningState": state, "uniqueId": res.uniqueID, "upgradePolicy": map[string]string{"mode": "Manual"}}
	}
	return out
}

func (c *Cloud) armGet(w http.ResponseWriter, route armRoute) {
	st := &c.arm
	st.mu.Lock()
	st.settle(time.Now())
	res := st.lookup(w, route)
	var body map[string]any
	if res != nil {
		body = res.view(res.identity, res.provisioningState)
	}
	st.mu.Unlock()
	if res != nil {
		writeJSON(w, http.StatusOK, body)
	}
}

// identityPatch is the part of a PATCH body the fake acts on.
type identityPatch struct {
	Identity *struct {
		Type                   *string                    `json:"type"`
		UserAssignedIdentities map[string]json.RawMessage `json:"userAssignedIdentities"`
	} `json:"identity"`
}

// parseIdentityType reads identity.type: "None", "SystemAssigned", "UserAssigned" or both joined by a comma.
func parseIdentityType(s string) (system, user, ok bool) {
	for part := range strings.SplitSeq(s, ",") {
		switch strings.ToLower(strings.TrimSpace(part)) {
		case "systemassigned":
			system = true
		case "userassigned":
			user = true
		case "none":
			if strings.Contains(s, ",") {
				return false, false, false
			}
		default:
			return false, false, false
		}
	}
	return system, user, true
}

// armPatch updates a resource's identity with ARM's merge semantics for userAssignedIdentities: a key with a null
// value is removed, others are added, keys compare case-insensitively, and keys not named are kept. Without a type,
// the type follows the identities (None → UserAssigned, SystemAssigned → "SystemAssigned, UserAssigned", and back
// when no user-assigned identity remains); a type given is obeyed, and one without UserAssigned drops them all. When
// the same key is both added and removed (differing in case), the addition wins.
//
// The update is a long-running operation: the answer is 200 with the resource as it will be, provisioningState
// Updating, and Azure-AsyncOperation and Location headers. GET (and IMDS) keep the previous identity, with
// provisioningState Updating, until the operation succeeds.
func (c *Cloud) armPatch(w http.ResponseWriter, r *http.Request, host string, route armRoute, caller armCaller, version string) {
	var patch identityPatch
	if err := json.NewDecoder(r.Body).Decode(&patch); err != nil {
		armError(w, http.StatusBadRequest, "InvalidRequestContent", "The request content was invalid and could not be deserialized: '"+err.Error()+"'.")
		return
	}
	var adds, removes []string
	var typ *string
	if patch.Identity != nil {
		typ = patch.Identity.Type
		keys := make([]string, 0, len(patch.Identity.UserAssignedIdentities))
		for k := range patch.Identity.UserAssignedIdentities {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if string(patch.Identity.UserAssignedIdentities[k]) == "null" {
				removes = append(removes, k)
			} else {
				adds = append(adds, k)
			}
		}
	}
	// Identities are looked up before taking the ARM lock: Cloud.mu is never taken inside it.
	known := map[string]Identity{}
	for _, k := range adds {
		if id, ok := c.identityByResourceID(k); ok {
			known[strings.ToLower(k)] = id
		}
	}

	st := &c.arm
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	st.settle(now)
	res := st.lookup(w, route)
	if res == nil {
		return
	}
	// ARM validates linked resource IDs and the caller's right to link them before the provider sees the request.
	for _, k := range slices.Concat(adds, removes) {
		if !userAssignedIDPattern.MatchString(k) {
			armError(w, http.StatusBadRequest, "LinkedInvalidPropertyId", fmt.Sprintf(
				"Property id '%s' at path 'identity.userAssignedIdentities' is invalid. Expect fully qualified resource Id that start with '/subscriptions/{subscriptionId}' or '/providers/{resourceProviderNamespace}/'.", k))
			return
		}
	}
	var denied []string
	for _, k := range adds {
		if d := st.denied[strings.ToLower(k)]; d["*"] || d[strings.ToLower(caller.clientID)] {
			denied = append(denied, k)
		}
	}
	if len(denied) > 0 {
		// The message names the denied scopes comma-separated, which aad-pod-identity's MIC parses to drop them and
		// retry with the rest.
		armError(w, http.StatusForbidden, "LinkedAuthorizationFailed", fmt.Sprintf(
			"The client '%s' with object id '%s' has permission to perform action 'Microsoft.Compute/%s/write' on scope '%s'; however, it does not have permission to perform action 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) '%s' or the linked scope(s) are invalid.",
			caller.objectID, caller.objectID, res.kind, res.id, strings.Join(denied, ",")))
		return
	}
	if res.pending != "" {
		armError(w, http.StatusConflict, "AnotherOperationInProgress", fmt.Sprintf(
			"Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: %s.",
			operationURL(host, res, res.pending, version)))
		return
	}
	next := res.identity.clone()
	system, user := next.system, true
	if typ != nil {
		var ok bool
		if system, user, ok = parseIdentityType(*typ); !ok {
			armError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf(
				"The value '%s' of parameter 'identity.type' is invalid. Allowed values are 'None', 'SystemAssigned', 'UserAssigned' and 'SystemAssigned, UserAssigned'.", *typ))
			return
		}
		if !user && len(adds) > 0 {
			armError(w, http.StatusBadRequest, "InvalidParameter", fmt.Sprintf(
				"Parameter 'identity.userAssignedIdentities' cannot be specified with identity type '%s'.", *typ))
			return
		}
	}
	var missing []string
	for _, k := range adds {
		if _, ok := known[strings.ToLower(k)]; !ok && next.userIndex(k) < 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		// The provider relays the managed identity service's refusal; the IDs appear quoted, one by one.
		quoted := make([]string, len(missing))
		for i, m := range missing {
			quoted[i] = "'" + m + "'"
		}
		armError(w, http.StatusBadRequest, "FailedIdentityOperation", fmt.Sprintf(
			`Identity operation for resource '%s' failed with error 'Failed to perform resource identity operation. Status: 'NotFound'. Response: '{"error":{"code":"NotFound","message":"Resource(s) %s not found."}}'.'.`,
			res.id, strings.Join(quoted, ", ")))
		return
	}
	if !user {
		next.user = nil
	}
	for _, k := range removes {
		if i := next.userIndex(k); i >= 0 {
			next.user = slices.Delete(next.user, i, i+1)
		}
	}
	for _, k := range adds {
		if next.userIndex(k) >= 0 {
			continue
		}
		id := known[strings.ToLower(k)]
		next.user = append(next.user, assignedIdentity{resourceID: k, clientID: id.ClientID, principalID: id.PrincipalID})
	}
	switch {
	case system && !next.system:
		// A system-assigned identity lives in the subscription's tenant: the caller's.
		next.system, next.principalID, next.tenantID = true, newGUID(), caller.tenantID
	case !system:
		next.system, next.principalID, next.tenantID = false, "", ""
	}
	op := &armOperation{id: newGUID(), resource: strings.ToLower(res.id), subscription: res.subscription, identity: next, started: now, done: now.Add(st.delay)}
	st.operations[op.id] = op
	res.pending, res.provisioningState = op.id, "Updating"
	status := operationURL(host, res, op.id, version)
	w.Header().Set("Azure-AsyncOperation", status)
	w.Header().Set("Location", status+"&monitor=true")
	writeJSON(w, http.StatusOK, res.view(next, "Updating"))
}

// operationURL is where an operation's status is polled, as the compute provider hands it out.
func operationURL(host string, res *armResource, opID, version string) string {
	return "https://" + host + "/subscriptions/" + res.subscription + "/providers/Microsoft.Compute/locations/" + res.location +
		"/operations/" + opID + "?api-version=" + version
}

// armOperationStatus answers a poll. The Azure-AsyncOperation URL answers 200 with the status; the Location URL
// (monitor=true) answers 202 while the operation runs and 200 once it is done.
func (c *Cloud) armOperationStatus(w http.ResponseWriter, r *http.Request, route armRoute) {
	st := &c.arm
	st.mu.Lock()
	st.init()
	st.settle(time.Now())
	op := st.operations[route.operation]
	var started, done time.Time
	var succeeded bool
	if op != nil && strings.EqualFold(op.subscription, route.subscription) {
		started, done, succeeded = op.started, op.done, op.succeeded
	} else {
		op = nil
	}
	st.mu.Unlock()
	if op == nil {
		armError(w, http.StatusNotFound, "NotFound", fmt.Sprintf("The operation '%s' could not be found.", route.operation))
		return
	}
	if r.URL.Query().Get("monitor") == "true" {
		if !succeeded {
			w.Header().Set("Location", "https://"+r.Host+r.URL.RequestURI())
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	body := map[string]any{"name": route.operation, "startTime": started.UTC().Format(time.RFC3339Nano), "status": "InProgress"}
	if succeeded {
		body["status"], body["endTime"] = "Succeeded", done.UTC().Format(time.RFC3339Nano)
	}
	writeJSON(w, http.StatusOK, body)
}

// derivedGUID is a GUID-shaped ID stable for its inputs, for IDs the fake must invent but keep across calls.
func derivedGUID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.Join(parts, "/"))))
	h := hex.EncodeToString(sum[:16])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// UnassignIdentities removes user-assigned identities from a VM or scale set at once, as an administrator editing
// it by hand would (an assignment controller must notice and put back what it assigned).
func (c *Cloud) UnassignIdentities(resourceID string, identityResourceIDs ...string) error {
	return c.withResource(resourceID, func(res *armResource) {
		for _, rid := range identityResourceIDs {
			if i := res.identity.userIndex(rid); i >= 0 {
				res.identity.user = append(res.identity.user[:i], res.identity.user[i+1:]...)
			}
		}
	})
}

// SetProvisioningState sets a VM's or scale set's provisioningState as GET shows it, as the platform does while it
// works on the resource: "Deleting" while it is being deleted (an AKS node pool scaled away, for instance).
func (c *Cloud) SetProvisioningState(resourceID, state string) error {
	return c.withResource(resourceID, func(res *armResource) { res.provisioningState = state })
}
