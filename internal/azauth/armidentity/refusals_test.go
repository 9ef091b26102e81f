/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package armidentity_test

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/acrpull/acrpull/internal/azauth"
	"github.com/acrpull/acrpull/internal/azauth/armidentity"
	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// The service principal these tests sign in to Resource Manager as, in a fake cloud reached only through its proxy,
// as production reaches Azure through HTTPS_PROXY.
const (
	home      = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	secretApp = "5ec7e700-0000-4000-8000-000000000001"
	secret    = "s3cret~Value.only-Entra-knows"
)

var fake *azurefake.Cloud

func TestMain(m *testing.M) {
	os.Exit(azurefake.RunTests(m, &fake, func(cloud *azurefake.Cloud) error {
		cloud.AddIdentity(azurefake.Identity{ClientID: secretApp, TenantID: home})
		cloud.AddClientSecret(secretApp, secret)
		return nil
	}))
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func armClient(t *testing.T) *armidentity.Client {
	t.Helper()
	azure := azauth.NewClient(azauth.Options{HTTPClient: fake.HTTPClient(), CallTimeout: 10 * time.Second})
	arm, err := armidentity.New(azure, azauth.PublicCloud, "", armidentity.Credential{TenantID: home, ClientID: secretApp, ClientSecret: secret}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return arm
}

// ARM's FailedIdentityOperation names every identity the managed identity service did not find, quoted one by one
// after the VM's own quoted ID: each of them, and neither the VM nor the identity that exists, is what the PATCH
// must drop.
func TestFailedIdentityOperationNamesEveryMissingIdentity(t *testing.T) {
	ctx := testContext(t)
	vm := fake.AddVM("s-fio", "g", "vm-fio")
	present := "/subscriptions/s-fio/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/present"
	fake.AddIdentity(azurefake.Identity{ClientID: "f1000000-0000-4000-8000-000000000001", TenantID: home, ResourceID: present})
	var missing []string
	for _, n := range []string{"Gone-1", "gone_2", "gone.3"} {
		missing = append(missing, "/subscriptions/s-fio/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"+n)
	}
	arm := armClient(t)
	current, err := arm.HostIdentities(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	err = arm.UpdateHostIdentities(ctx, vm, current, append([]string{present}, missing...), nil)
	if azauth.KindOf(err) != armidentity.AssignDenied {
		t.Fatalf("error %v (kind %s), want %s", err, azauth.KindOf(err), armidentity.AssignDenied)
	}
	got := armidentity.DeniedResourceIDsOf(err)
	var want []string
	for _, m := range missing {
		want = append(want, strings.ToLower(m))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("refused identities %q, want %q", got, want)
	}
}

// A VM whose last read showed provisioningState Deleting gets no PATCH; once a read shows it otherwise, it does.
func TestUpdateSkipsAHostBeingDeleted(t *testing.T) {
	ctx := testContext(t)
	vm := fake.AddVM("s-del", "g", "vm-del")
	id := "/subscriptions/s-del/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id"
	fake.AddIdentity(azurefake.Identity{ClientID: "f1000000-0000-4000-8000-000000000002", TenantID: home, ResourceID: id})
	if err := fake.SetProvisioningState(vm, "Deleting"); err != nil {
		t.Fatal(err)
	}
	arm := armClient(t)
	current, err := arm.HostIdentities(ctx, vm)
	if err != nil {
		t.Fatal(err)
	}
	patches := fake.ARMCount(http.MethodPatch, azurefake.ARMKindVM)
	if err := arm.UpdateHostIdentities(ctx, vm, current, []string{id}, nil); azauth.KindOf(err) != armidentity.HostDeleting {
		t.Fatalf("error %v, want kind %s", err, armidentity.HostDeleting)
	}
	if n := fake.ARMCount(http.MethodPatch, azurefake.ARMKindVM) - patches; n != 0 {
		t.Fatalf("%d PATCHes sent to a VM being deleted", n)
	}
	if err := fake.SetProvisioningState(vm, "Succeeded"); err != nil {
		t.Fatal(err)
	}
	if current, err = arm.HostIdentities(ctx, vm); err != nil {
		t.Fatal(err)
	}
	if err := arm.UpdateHostIdentities(ctx, vm, current, []string{id}, nil); err != nil {
		t.Fatalf("update after the deletion was called off: %v", err)
	}
}
