/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package v1beta2

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AzureEnvironmentType names the Azure cloud whose endpoints a binding uses.
// +kubebuilder:validation:Enum=PublicCloud;USGovernmentCloud;ChinaCloud;AirgappedCloud
type AzureEnvironmentType string

// The Azure clouds acrpull knows the endpoints of; AirgappedCloud takes its endpoints from spec.acr.cloudConfig.
const (
	AzureEnvironmentPublicCloud       AzureEnvironmentType = "PublicCloud"
	AzureEnvironmentUSGovernmentCloud AzureEnvironmentType = "USGovernmentCloud"
	AzureEnvironmentChinaCloud        AzureEnvironmentType = "ChinaCloud"
	AzureEnvironmentAirgappedCloud    AzureEnvironmentType = "AirgappedCloud"
)

// AcrPullBindingSpec says which registry to pull from, with which identity, for which service account.
type AcrPullBindingSpec struct {
	// ACR is the registry the pull credential is for.
	// +required
	ACR AcrConfiguration `json:"acr"`

	// Auth is the Azure identity the credential is minted with.
	// +required
	Auth AuthenticationMethod `json:"auth"`

	// ServiceAccountName is the service account, in the binding's namespace, whose imagePullSecrets receive the
	// credential.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountName"`
}

// AcrConfiguration describes the registry and the repositories the credential may pull.
// +kubebuilder:validation:XValidation:rule="self.environment == 'AirgappedCloud' ? has(self.cloudConfig) : !has(self.cloudConfig)",message="cloudConfig is required when environment is AirgappedCloud, and must not be set otherwise"
type AcrConfiguration struct {
	// Server is the registry's host name, for example example.azurecr.io: no scheme, port or path.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:XValidation:rule="isURL('https://' + self) && url('https://' + self).getHostname() == self",message="server must be a fully-qualified domain name"
	// +kubebuilder:validation:XValidation:rule="!self.lowerAscii().matches('\\\\.azurecr\\\\.(io|us|cn)\\\\.')",message="server looks like an Azure Container Registry host followed by another domain; registries end in azurecr.io, azurecr.us or azurecr.cn"
	Server string `json:"server"`

	// Scope is one or more space-separated registry scopes, for example "repository:app:pull" or
	// "repository:a:pull repository:b:pull,push". The registry grants no wildcards, so none are accepted.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="!self.contains('*')",message="scope must not contain wildcards: the registry grants none; list each repository"
	// +kubebuilder:validation:XValidation:rule="self.matches('^ *repository:[a-z0-9]+(?:(?:[._/]|__|-+)[a-z0-9]+)*:[a-z_]+(?:,[a-z_]+)*(?: +repository:[a-z0-9]+(?:(?:[._/]|__|-+)[a-z0-9]+)*:[a-z_]+(?:,[a-z_]+)*)* *$')",message="scope must be space-separated entries of the form repository:<name>:<action>[,<action>...]"
	Scope string `json:"scope"`

	// Environment is the Azure cloud that hosts the registry and the identity.
	// +required
	// +kubebuilder:default=PublicCloud
	Environment AzureEnvironmentType `json:"environment"`

	// CloudConfig gives the endpoints of an AirgappedCloud; it is required there and forbidden elsewhere.
	// +optional
	CloudConfig *AirgappedCloudConfiguration `json:"cloudConfig,omitempty"`
}

// AirgappedCloudConfiguration holds the endpoints of a cloud acrpull has no table for.
type AirgappedCloudConfiguration struct {
	// EntraAuthorityHost is the Entra ID authority, for example https://login.example.cloud/.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && url(self).getScheme() == 'https'",message="entraAuthorityHost must be an https URL"
	EntraAuthorityHost string `json:"entraAuthorityHost"`

	// ResourceManagerAudience is the audience of Azure Resource Manager tokens in that cloud.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	ResourceManagerAudience string `json:"resourceManagerAudience"`
}

// AuthenticationMethod selects exactly one way of obtaining an Entra ID token.
// +kubebuilder:validation:XValidation:rule="(has(self.managedIdentity) ? 1 : 0) + (has(self.workloadIdentity) ? 1 : 0) + (has(self.servicePrincipal) ? 1 : 0) == 1",message="exactly one of managedIdentity, workloadIdentity or servicePrincipal must be set"
type AuthenticationMethod struct {
	// ManagedIdentity uses a user-assigned identity assigned to the nodes the controller runs on (through IMDS).
	// +optional
	ManagedIdentity *ManagedIdentityAuth `json:"managedIdentity,omitempty"`

	// WorkloadIdentity federates a service account of the binding's namespace with an identity. Preferred.
	// +optional
	WorkloadIdentity *WorkloadIdentityAuth `json:"workloadIdentity,omitempty"`

	// ServicePrincipal authenticates as an application with a client secret or a certificate kept in a Secret of the
	// binding's namespace: for clusters outside Azure, which have neither IMDS nor federation with Entra ID.
	// +optional
	ServicePrincipal *ServicePrincipalAuth `json:"servicePrincipal,omitempty"`
}

// ManagedIdentityAuth names a user-assigned managed identity by exactly one of its IDs.
// +kubebuilder:validation:XValidation:rule="(has(self.clientID) ? 1 : 0) + (has(self.resourceID) ? 1 : 0) == 1",message="exactly one of clientID or resourceID must be set"
type ManagedIdentityAuth struct {
	// ClientID is the identity's client (application) ID, a GUID.
	// +optional
	// +kubebuilder:validation:MaxLength=36
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	ClientID string `json:"clientID,omitempty"`

	// ResourceID is the identity's ARM resource ID:
	// /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	// +kubebuilder:validation:XValidation:rule="self.matches('(?i)^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\\\\.managedidentity/userassignedidentities/[^/]+$')",message="resourceID must look like /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"
	ResourceID string `json:"resourceID,omitempty"`
}

// WorkloadIdentityAuth federates a service account with an identity. The controller requests a token for
// ServiceAccountName and presents it to Entra ID as a client assertion.
// +kubebuilder:validation:XValidation:rule="has(self.clientID) == has(self.tenantID)",message="clientID and tenantID must be set together, or both left to the service account's annotations"
type WorkloadIdentityAuth struct {
	// ServiceAccountName is the federated service account in the binding's namespace. It may differ from
	// spec.serviceAccountName, the account that receives the pull secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	ServiceAccountName string `json:"serviceAccountRef"`

	// ClientID of the identity; when unset, the service account's azure.workload.identity/client-id annotation.
	// +optional
	// +kubebuilder:validation:MaxLength=36
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	ClientID string `json:"clientID,omitempty"`

	// TenantID of the identity; when unset, the service account's azure.workload.identity/tenant-id annotation.
	// +optional
	// +kubebuilder:validation:MaxLength=36
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	TenantID string `json:"tenantID,omitempty"`
}

// ServicePrincipalAuth names an application (service principal) and the Secret holding its credential.
type ServicePrincipalAuth struct {
	// TenantID of the application's home tenant, a GUID.
	// +required
	// +kubebuilder:validation:MaxLength=36
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	TenantID string `json:"tenantID"`

	// ClientID is the application's client (application) ID, a GUID.
	// +required
	// +kubebuilder:validation:MaxLength=36
	// +kubebuilder:validation:Pattern=`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`
	ClientID string `json:"clientID"`

	// SecretRef names the Secret, in the binding's namespace, that holds the credential. The Secret must carry the
	// label acr.microsoft.com/service-principal: "true", and exactly one of: clientSecret (a client secret);
	// tls.crt and tls.key (a PEM certificate and its RSA private key, as in a kubernetes.io/tls Secret); or
	// certificate.pfx (a PKCS#12 bundle of the certificate and its RSA key), with its password in password when it
	// has one.
	// +required
	SecretRef ServicePrincipalSecretReference `json:"secretRef"`
}

// ServicePrincipalSecretReference names a Secret of the binding's own namespace: it has no namespace field, so a
// binding can never make the controller read another namespace's Secret.
type ServicePrincipalSecretReference struct {
	// Name of the Secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`
}

// AcrPullBindingStatus reports the credential the controller last wrote and why it is or is not usable.
type AcrPullBindingStatus struct {
	// LastTokenRefreshTime is when the token in the pull secret was issued.
	// +optional
	LastTokenRefreshTime *metav1.Time `json:"lastTokenRefreshTime,omitempty"`

	// TokenExpirationTime is when the token in the pull secret expires.
	// +optional
	TokenExpirationTime *metav1.Time `json:"tokenExpirationTime,omitempty"`

	// Error is the last error, kept for msi-acrpull clients; Conditions say more.
	// +optional
	Error string `json:"error,omitempty"`

	// ObservedGeneration is the generation of the spec the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// TokenAudience is the Entra ID token audience the registry accepted.
	// +optional
	TokenAudience string `json:"tokenAudience,omitempty"`

	// Conditions: Ready says whether the pull secret holds a valid credential attached to the service account;
	// Verified, whether the registry let that credential read the scope's repository.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// AcrPullBinding projects an Azure identity's registry credential into a service account's image pull secrets.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:storageversion
// +kubebuilder:resource:shortName={apb,apbs},categories=acrpull
// +kubebuilder:printcolumn:name="Server",type=string,JSONPath=`.spec.acr.server`
// +kubebuilder:printcolumn:name="Scope",type=string,JSONPath=`.spec.acr.scope`,priority=1
// +kubebuilder:printcolumn:name="Target",type=string,JSONPath=`.spec.serviceAccountName`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Verified",type=string,JSONPath=`.status.conditions[?(@.type=="Verified")].reason`
// +kubebuilder:printcolumn:name="Last Refresh",type=date,JSONPath=`.status.lastTokenRefreshTime`,priority=1
// +kubebuilder:printcolumn:name="Expiration",type=string,JSONPath=`.status.tokenExpirationTime`
// +kubebuilder:printcolumn:name="Error",type=string,JSONPath=`.status.error`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AcrPullBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AcrPullBindingSpec   `json:"spec,omitempty"`
	Status AcrPullBindingStatus `json:"status,omitempty"`
}

// AcrPullBindingList is a list of AcrPullBindings.
// +kubebuilder:object:root=true
type AcrPullBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AcrPullBinding `json:"items"`
}
