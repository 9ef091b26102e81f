/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// PlaceNode says that the machine whose requests come from sourceIP is a node of a VM or scale set (its resource ID,
// a scale set instance's ID, or a Kubernetes node's providerID "azure:///subscriptions/…"). From then on IMDS answers
// that address only for the identities assigned to that VM or scale set, as real IMDS answers each machine for its
// own; addresses never placed keep the Identity.AssignedToVM behaviour.
//
// IMDS sees the address the request comes from at the fake's proxy; HTTPClientFrom makes requests come from a given
// loopback address.
func (c *Cloud) PlaceNode(sourceIP, resourceID string) error {
	ip := net.ParseIP(sourceIP)
	if ip == nil {
		return fmt.Errorf("placing node %q: not an IP address", sourceIP)
	}
	key := strings.ToLower(computeResourceOf(resourceID))
	st := &c.arm
	st.mu.Lock()
	defer st.mu.Unlock()
	st.init()
	if st.resources[key] == nil {
		return fmt.Errorf("placing node %s on %s: no such VM or scale set", sourceIP, resourceID)
	}
	st.nodes[ip.String()] = key
	return nil
}

// UnplaceNode forgets where the node at sourceIP runs; IMDS treats it as unplaced again.
func (c *Cloud) UnplaceNode(sourceIP string) {
	st := &c.arm
	st.mu.Lock()
	defer st.mu.Unlock()
	if ip := net.ParseIP(sourceIP); ip != nil && st.nodes != nil {
		delete(st.nodes, ip.String())
	}
}

// computeResourceOf turns a providerID or a scale set instance's ID into the VM's or scale set's resource ID.
func computeResourceOf(resourceID string) string {
	id := strings.TrimPrefix(resourceID, "azure://")
	p := strings.Split(strings.Trim(id, "/"), "/")
	if len(p) == 10 && strings.EqualFold(p[6], ARMKindVMSS) && strings.EqualFold(p[8], ARMKindVM) {
		p = p[:8]
	}
	return "/" + strings.Join(p, "/")
}

// HTTPClientFrom is HTTPClient with connections made from sourceIP, so that the fake's IMDS takes the requests for
// those of a node placed there. The address must be local: on Linux every 127.0.0.0/8 address is.
func (c *Cloud) HTTPClientFrom(sourceIP string) *http.Client {
	if t, ok := c.arm.clients.Load(sourceIP); ok {
		return &http.Client{Transport: t.(*http.Transport)}
	}
	base := c.HTTPClient().Transport.(*http.Transport)
	t := base.Clone()
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(sourceIP)}}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		return dialer.DialContext(ctx, network, addr)
	}
	actual, _ := c.arm.clients.LoadOrStore(sourceIP, t)
	return &http.Client{Transport: actual.(*http.Transport)}
}

// closeNodeClients drops the idle connections of HTTPClientFrom's clients.
func (c *Cloud) closeNodeClients() {
	c.arm.clients.Range(func(_, t any) bool {
		t.(*http.Transport).CloseIdleConnections()
		return true
	})
}

// imdsIdentity is the identity IMDS answers for a caller: for a placed node, one assigned (as committed) to its VM or
// scale set; for any other caller, one with AssignedToVM.
func (c *Cloud) imdsIdentity(r *http.Request, clientID, resourceID, objectID string) (Identity, string) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	var placed bool
	var identity armIdentity
	if ip := net.ParseIP(host); ip != nil {
		st := &c.arm
		st.mu.Lock()
		if key, ok := st.nodes[ip.String()]; ok {
			st.settle(time.Now())
			if res := st.resources[key]; res != nil {
				placed, identity = true, res.identity.clone()
			}
		}
		st.mu.Unlock()
	}
	if !placed {
		return c.assignedIdentity(clientID, resourceID, objectID)
	}
	// The system-assigned identity has no application the fake knows; its client ID is derived from its principal.
	systemIdentity := func() Identity {
		return Identity{ClientID: derivedGUID("system", identity.principalID), PrincipalID: identity.principalID, TenantID: identity.tenantID}
	}
	named := clientID != "" || resourceID != "" || objectID != ""
	if !named {
		switch {
		case identity.system:
			// Real IMDS answers an unnamed request with the system-assigned identity when there is one.
			return systemIdentity(), ""
		case len(identity.user) == 1:
			if id, ok := c.identity(identity.user[0].clientID); ok {
				return id, ""
			}
		case len(identity.user) > 1:
			return Identity{}, "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request"
		}
		return Identity{}, "Identity not found"
	}
	if identity.system && (strings.EqualFold(objectID, identity.principalID) || strings.EqualFold(clientID, derivedGUID("system", identity.principalID))) {
		return systemIdentity(), ""
	}
	for _, u := range identity.user {
		if (clientID != "" && strings.EqualFold(u.clientID, clientID)) ||
			(resourceID != "" && strings.EqualFold(u.resourceID, resourceID)) ||
			(objectID != "" && strings.EqualFold(u.principalID, objectID)) {
			if id, ok := c.identity(u.clientID); ok {
				return id, ""
			}
		}
	}
	return Identity{}, "Identity not found"
}
