/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package armidentity

import (
	"strings"
	"testing"
)

// A host ID (from a node's providerID) that parses names a VM or scale set completely: no empty part, no separator
// inside a part, under Microsoft.Compute; anything else is refused, never half-read.
func FuzzParseHost(f *testing.F) {
	for _, seed := range []string{
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachineScaleSets/vmss",
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm",
		"/subscriptions//resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm",
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualMachines/vm",
		"subscriptions/s/resourcegroups/g/providers/microsoft.compute/VIRTUALMACHINES/vm/",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, id string) {
		h, err := parseHost(id)
		if err != nil {
			return
		}
		for _, part := range []string{h.subscription, h.group, h.name} {
			if part == "" || strings.Contains(part, "/") {
				t.Fatalf("%q parsed into an empty or split part: %+v", id, h)
			}
		}
		if !strings.Contains(strings.ToLower(id), "/providers/microsoft.compute/") {
			t.Fatalf("%q parsed without naming Microsoft.Compute: %+v", id, h)
		}
	})
}

func TestParseHost(t *testing.T) {
	for id, ok := range map[string]bool{
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachineScaleSets/vmss": true,
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm":           true,
		"/subscriptions//resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm":            false,
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualMachines/vm":           false,
		"/subscriptions/s/resourceGroups/g/xproviders/Microsoft.Compute/virtualMachines/vm":          false,
		"/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d":                      false,
	} {
		if _, err := parseHost(id); (err == nil) != ok {
			t.Errorf("parseHost(%q): %v, want ok=%v", id, err, ok)
		}
	}
}
