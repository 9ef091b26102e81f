/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package azauth

import (
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
)

// ACRAudience is the Entra ID audience of tokens meant for Azure Container Registry itself. Registries with
// authentication-as-arm disabled accept only this one.
const ACRAudience = "https://containerregistry.azure.net"

// Cloud is what acrpull needs to know about one Azure cloud.
type Cloud struct {
	// AuthorityHost is the Entra ID authority, for example https://login.microsoftonline.com/.
	AuthorityHost string
	// ARMAudience is the audience of Azure Resource Manager tokens, which registries accept unless
	// authentication-as-arm is disabled.
	ARMAudience string
	// RegistrySuffix is the host suffix of the cloud's container registries.
	RegistrySuffix string
}

// The clouds acrpull has tables for. The ARM audiences are the ones azcore registers for its arm runtime, which are
// the audiences registries have always accepted.
var (
	PublicCloud = Cloud{
		AuthorityHost:  cloud.AzurePublic.ActiveDirectoryAuthorityHost,
		ARMAudience:    "https://management.core.windows.net/",
		RegistrySuffix: "azurecr.io",
	}
	USGovernmentCloud = Cloud{
		AuthorityHost:  cloud.AzureGovernment.ActiveDirectoryAuthorityHost,
		ARMAudience:    "https://management.core.usgovcloudapi.net",
		RegistrySuffix: "azurecr.us",
	}
	ChinaCloud = Cloud{
		AuthorityHost:  cloud.AzureChina.ActiveDirectoryAuthorityHost,
		ARMAudience:    "https://management.core.chinacloudapi.cn",
		RegistrySuffix: "azurecr.cn",
	}
	knownClouds = []Cloud{PublicCloud, USGovernmentCloud, ChinaCloud}
)

// KnownRegistrySuffixes are the registry host suffixes of the Azure clouds acrpull has tables for: where tokens may
// go when no suffixes are configured.
func KnownRegistrySuffixes() []string {
	var out []string
	for _, c := range knownClouds {
		out = append(out, c.RegistrySuffix)
	}
	return out
}

// CloudNamed returns the table of a named cloud (the v1beta2 environment names), and false for AirgappedCloud or an
// unknown name, whose endpoints must come from the binding.
func CloudNamed(name string) (Cloud, bool) {
	switch name {
	case "", "PublicCloud":
		return PublicCloud, true
	case "USGovernmentCloud":
		return USGovernmentCloud, true
	case "ChinaCloud":
		return ChinaCloud, true
	}
	return Cloud{}, false
}

// scopeFor turns an audience into the OAuth2 scope Entra ID expects.
func scopeFor(audience string) string {
	return strings.TrimSuffix(audience, "/") + "/.default"
}
