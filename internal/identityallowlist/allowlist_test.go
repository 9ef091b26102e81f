/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package identityallowlist_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/acrpull/acrpull/internal/identityallowlist"
)

const (
	teamAClient   = "11111111-1111-1111-1111-111111111111"
	sharedClient  = "22222222-2222-2222-2222-222222222222"
	teamBResource = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/team-b"
)

func TestAllowsOnlyWhatARuleGivesTheNamespace(t *testing.T) {
	a, err := identityallowlist.Parse(map[string]string{
		"team-a.namespaces":  "team-a, team-a-dev",
		"team-a.clientIDs":   "11111111-1111-1111-1111-111111111111",
		"team-b.namespaces":  "team-b",
		"team-b.resourceIDs": "/SUBSCRIPTIONS/s/resourcegroups/RG/providers/microsoft.managedidentity/userAssignedIdentities/team-b",
		"shared.namespaces":  "*",
		"shared.clientIDs":   "\n  22222222-2222-2222-2222-222222222222\n",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		namespace, clientID, resourceID string
		want                            bool
	}{
		{"team-a", teamAClient, "", true},
		{"team-a-dev", "11111111-1111-1111-1111-11111111111A", "", false},
		{"team-a", "11111111-1111-1111-1111-111111111111", "", true},
		{"team-b", teamAClient, "", false},
		{"team-b", "", teamBResource, true},
		{"team-b", "", "/subscriptions/S/RESOURCEGROUPS/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/TEAM-B", true},
		{"team-a", "", teamBResource, false},
		// A resource ID does not vouch for a client ID named beside it: the client ID is what is used.
		{"team-b", teamAClient, teamBResource, false},
		{"anyone", sharedClient, "", true},
		{"anyone", "", "", false},
		{"team-a", "", "", false},
	} {
		if got := a.Allows(tc.namespace, tc.clientID, tc.resourceID); got != tc.want {
			t.Errorf("Allows(%q, %q, %q) = %v, want %v", tc.namespace, tc.clientID, tc.resourceID, got, tc.want)
		}
	}
	// Client IDs upper-cased by the administrator match as well.
	upper, _ := identityallowlist.Parse(map[string]string{"x.namespaces": "x", "x.clientIDs": "ABCDEF"})
	if !upper.Allows("x", "abcdef", "") {
		t.Error("client IDs must compare case-insensitively")
	}
}

func TestEmptyAllowListAllowsNothing(t *testing.T) {
	a, err := identityallowlist.Parse(nil)
	if err != nil || a.Allows("default", teamAClient, "") {
		t.Fatalf("empty allow-list: err %v, allows %v", err, a.Allows("default", teamAClient, ""))
	}
}

func TestTyposAreErrors(t *testing.T) {
	for _, data := range []map[string]string{
		{"team-a.namespace": "team-a"},
		{"team-a.clientIds": teamAClient, "team-a.namespaces": "team-a"},
		{".namespaces": "team-a"},
		{"team-a.clientIDs": teamAClient},
	} {
		if _, err := identityallowlist.Parse(data); err == nil {
			t.Errorf("%v accepted", data)
		}
	}
}

// The kubelet updates a ConfigMap volume by writing a new timestamped directory and swapping the ..data link; the
// allow-list follows without a restart, and a broken update is an error (callers refuse), not the old rules.
func TestDirFollowsConfigMapUpdates(t *testing.T) {
	dir := t.TempDir()
	writeVersion(t, dir, "v1", map[string]string{"a.namespaces": "ns", "a.clientIDs": teamAClient})
	d, err := identityallowlist.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a, _ := d.Current(); !a.Allows("ns", teamAClient, "") {
		t.Fatal("first version not read")
	}
	writeVersion(t, dir, "v2", map[string]string{"a.namespaces": "ns", "a.clientIDs": sharedClient})
	if a, _ := d.Current(); a.Allows("ns", teamAClient, "") || !a.Allows("ns", sharedClient, "") {
		t.Fatal("update not followed")
	}
	writeVersion(t, dir, "v3", map[string]string{"a.clientIDs": sharedClient})
	if _, err := d.Current(); err == nil {
		t.Fatal("a broken update must be an error")
	}
	if _, err := identityallowlist.Open(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing directory must stop start-up")
	}
}

// writeVersion lays files out as a ConfigMap volume does: ..<version>/key, ..data -> ..<version>, key -> ..data/key.
func writeVersion(t *testing.T, dir, version string, data map[string]string) {
	t.Helper()
	versionDir := filepath.Join(dir, ".."+version)
	if err := os.Mkdir(versionDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range data {
		if err := os.WriteFile(filepath.Join(versionDir, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(".."+version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Type()&os.ModeSymlink != 0 && e.Name()[0] != '.' {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
	for k := range data {
		if err := os.Symlink(filepath.Join("..data", k), filepath.Join(dir, k)); err != nil {
			t.Fatal(err)
		}
	}
}
