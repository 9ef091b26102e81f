/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azurefake_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// The fakeazure binary's "arm" section sets up scale sets with identities already assigned, node placements,
// denied assignments and the rate: each visible through ARM and IMDS.
func TestARMJSONConfig(t *testing.T) {
	w := newARMWorld(t)
	pool := "/subscriptions/" + armSub + "/resourceGroups/MC_nodes/providers/Microsoft.Compute/virtualMachineScaleSets/pool"
	raw := fmt.Sprintf(`{"arm": {
		"virtualMachineScaleSets": [{"subscription": %q, "resourceGroup": "MC_nodes", "name": "pool", "userAssignedIdentities": [%q]}],
		"virtualMachines": [{"subscription": %q, "resourceGroup": "MC_nodes", "name": "vm-0"}],
		"nodes": [{"sourceIP": "127.0.0.6", "resourceID": %q}],
		"deniedAssignments": [{"identityResourceID": %q, "callers": [%q]}],
		"operationDelay": "1ms",
		"rateLimit": {"reads": 100, "writes": 100}
	}}`, armSub, identityID("alpha"), armSub, "azure://"+pool+"/virtualMachines/3", identityID("beta"), micClient)
	var cfg azurefake.Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatal(err)
	}
	if err := w.cloud.ApplyConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if ids, err := w.cloud.AssignedIdentities(pool); err != nil || !slices.Equal(ids, []string{identityID("alpha")}) {
		t.Errorf("pool's identities: %v %v", ids, err)
	}
	if v := w.get(t, pool); v.typ != "UserAssigned" || len(v.users) != 1 {
		t.Errorf("GET pool: %+v", v)
	}
	if v := w.get(t, strings.Replace(pool, "virtualMachineScaleSets/pool", "virtualMachines/vm-0", 1)); v.typ != "None" {
		t.Errorf("GET vm-0: %+v", v)
	}
	if r := nodeIMDS(t, w.cloud, "127.0.0.6", ""); r.status != http.StatusOK || r.str("client_id") != armIdentities["alpha"] {
		t.Errorf("IMDS on the placed node: HTTP %d %s", r.status, r.raw)
	}
	if r := w.patchIdentities(t, pool, w.token, "", map[string]bool{identityID("beta"): true}); r.status != http.StatusForbidden {
		t.Errorf("denied assignment: HTTP %d %s", r.status, r.raw)
	}
	r := w.call(t, http.MethodGet, resourceURL(pool, computeAPI), w.token, nil)
	if remaining := r.header.Get("x-ms-ratelimit-remaining-subscription-reads"); remaining == "" || remaining == "11999" {
		t.Errorf("the configured rate does not show: remaining reads %q", remaining)
	}

	for name, bad := range map[string]string{
		"unknown identity":  fmt.Sprintf(`{"arm": {"virtualMachines": [{"subscription": "s", "resourceGroup": "g", "name": "v", "userAssignedIdentities": [%q]}]}}`, identityID("ghost")),
		"unknown resource":  `{"arm": {"nodes": [{"sourceIP": "127.0.0.7", "resourceID": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/nowhere"}]}}`,
		"bad delay":         `{"arm": {"operationDelay": "soon"}}`,
		"missing name":      `{"arm": {"virtualMachines": [{"subscription": "s", "resourceGroup": "g"}]}}`,
		"unknown ARM fault": `{"faults": {"arm-nowhere": {"status": 500}}}`,
		"not an IP address": `{"arm": {"virtualMachines": [{"subscription": "s", "resourceGroup": "g", "name": "v"}], "nodes": [{"sourceIP": "node-1", "resourceID": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/v"}]}}`,
	} {
		var cfg azurefake.Config
		if err := json.Unmarshal([]byte(bad), &cfg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := w.cloud.ApplyConfig(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// ARM faults are configured like the others.
	if err := w.cloud.ApplyConfig(azurefake.Config{Faults: map[azurefake.Endpoint]azurefake.FaultConfig{azurefake.ARMRead: {Status: 500, Count: 1}}}); err != nil {
		t.Fatal(err)
	}
	if r := w.call(t, http.MethodGet, resourceURL(pool, computeAPI), w.token, nil); r.status != http.StatusInternalServerError {
		t.Errorf("configured ARM fault: HTTP %d", r.status)
	}
}
