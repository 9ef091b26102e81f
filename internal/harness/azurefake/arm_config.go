/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake

import (
	"fmt"
	"time"
)

// ARMConfig is the Resource Manager part of Config.
type ARMConfig struct {
	VirtualMachines         []ARMResourceConfig `json:"virtualMachines,omitempty"`
	VirtualMachineScaleSets []ARMResourceConfig `json:"virtualMachineScaleSets,omitempty"`
	// Nodes place the machines at source addresses on VMs or scale sets, for IMDS (PlaceNode).
	Nodes []NodePlacementConfig `json:"nodes,omitempty"`
	// DeniedAssignments refuse callers the right to assign identities (DenyAssign).
	DeniedAssignments []DeniedAssignmentConfig `json:"deniedAssignments,omitempty"`
	// OperationDelay is how long updates stay in progress, as a Go duration ("15s").
	OperationDelay string              `json:"operationDelay,omitempty"`
	RateLimit      *ARMRateLimitConfig `json:"rateLimit,omitempty"`
}

// ARMResourceConfig is a VM or scale set, with the user-assigned identities (resource IDs) it already holds.
type ARMResourceConfig struct {
	Subscription           string   `json:"subscription"`
	ResourceGroup          string   `json:"resourceGroup"`
	Name                   string   `json:"name"`
	UserAssignedIdentities []string `json:"userAssignedIdentities,omitempty"`
}

// NodePlacementConfig says which VM or scale set (a resource ID or a node's providerID) the machine at SourceIP is.
type NodePlacementConfig struct {
	SourceIP   string `json:"sourceIP"`
	ResourceID string `json:"resourceID"`
}

// DeniedAssignmentConfig refuses the callers (client IDs; none means everyone) the right to assign an identity.
type DeniedAssignmentConfig struct {
	IdentityResourceID string   `json:"identityResourceID"`
	Callers            []string `json:"callers,omitempty"`
}

// ARMRateLimitConfig is requests per second per caller; zero does not limit.
type ARMRateLimitConfig struct {
	Reads  float64 `json:"reads,omitempty"`
	Writes float64 `json:"writes,omitempty"`
}

func (c *Cloud) applyARMConfig(cfg ARMConfig) error {
	for _, group := range []struct {
		add       func(subscription, resourceGroup, name string) string
		resources []ARMResourceConfig
	}{{c.AddVM, cfg.VirtualMachines}, {c.AddVMSS, cfg.VirtualMachineScaleSets}} {
		for _, rc := range group.resources {
			if rc.Subscription == "" || rc.ResourceGroup == "" || rc.Name == "" {
				return fmt.Errorf("a VM or scale set needs subscription, resourceGroup and name: %+v", rc)
			}
			id := group.add(rc.Subscription, rc.ResourceGroup, rc.Name)
			if err := c.AssignIdentities(id, rc.UserAssignedIdentities...); err != nil {
				return err
			}
		}
	}
	for _, n := range cfg.Nodes {
		if err := c.PlaceNode(n.SourceIP, n.ResourceID); err != nil {
			return err
		}
	}
	for _, d := range cfg.DeniedAssignments {
		c.DenyAssign(d.IdentityResourceID, d.Callers...)
	}
	if cfg.OperationDelay != "" {
		d, err := time.ParseDuration(cfg.OperationDelay)
		if err != nil {
			return fmt.Errorf("operationDelay: %w", err)
		}
		c.SetARMOperationDelay(d)
	}
	if rl := cfg.RateLimit; rl != nil {
		c.SetARMRateLimit(rl.Reads, rl.Writes)
	}
	return nil
}
