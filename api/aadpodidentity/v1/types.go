/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Names AAD Pod Identity users and tools rely on.
const (
	// PodLabel is the pod label whose value is compared with AzureIdentityBinding.spec.selector.
	PodLabel = "aadpodidbinding"

	// BehaviorAnnotation on an AzureIdentity, with the value BehaviorNamespaced, makes that identity usable only by
	// pods in its own namespace through bindings in that namespace, as the global namespaced flag does for all.
	BehaviorAnnotation = "aadpodidentity.k8s.io/Behavior"
	// BehaviorNamespaced is BehaviorAnnotation's one meaningful value.
	BehaviorNamespaced = "namespaced"

	// AssignedIdentityFinalizer keeps an AzureAssignedIdentity until its identity is removed from the node.
	AssignedIdentityFinalizer = "azureassignedidentity.finalizers.aadpodidentity.k8s.io"
	// NodeNameLabel on an AzureAssignedIdentity names the node of its pod, so node agents can watch only their own.
	NodeNameLabel = "nodename"
)

// IdentityType says what kind of Azure identity an AzureIdentity describes. Upstream stores it as an integer.
// +kubebuilder:validation:Enum=0;1;2
type IdentityType int

const (
	// UserAssignedMSI is a user-assigned managed identity (resourceID and clientID).
	UserAssignedMSI IdentityType = 0
	// ServicePrincipal is an application with a client secret (clientID, tenantID, clientPassword).
	ServicePrincipal IdentityType = 1
	// ServicePrincipalCertificate is an application with a PKCS#12 certificate: the Secret named by clientPassword
	// holds it under key "certificate" and its password under key "password".
	ServicePrincipalCertificate IdentityType = 2
)

// Status values of an AzureAssignedIdentity. The empty value is what releases before 1.6 wrote.
const (
	AssignedIDCreated    = "Created"
	AssignedIDAssigned   = "Assigned"
	AssignedIDUnAssigned = "Unassigned"
)

// AzureIdentitySpec describes an Azure identity pods may be given.
// +kubebuilder:validation:XValidation:rule="!has(self.resourceID) || size(self.resourceID) == 0 || self.resourceID.matches('(?i)^/subscriptions/[^/]+/resourcegroups/[^/]+/providers/Microsoft\\\\.ManagedIdentity/userAssignedIdentities/[^/]+$')",message="resourceID must look like /subscriptions/<subscription>/resourcegroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"
// +kubebuilder:validation:XValidation:rule="(has(self.type) && self.type != 0) || (has(self.clientID) && size(self.clientID) > 0) || (has(self.resourceID) && size(self.resourceID) > 0)",message="a user-assigned identity (type 0) needs clientID or resourceID"
// +kubebuilder:validation:XValidation:rule="!has(self.type) || self.type == 0 || (has(self.clientID) && size(self.clientID) > 0 && has(self.tenantID) && size(self.tenantID) > 0 && has(self.clientPassword) && has(self.clientPassword.name) && size(self.clientPassword.name) > 0)",message="a service principal (type 1 or 2) needs clientID, tenantID and clientPassword.name"
// +kubebuilder:validation:XValidation:rule="!has(self.auxiliaryTenantIDs) || size(self.auxiliaryTenantIDs) == 0 || (has(self.type) && self.type == 1)",message="auxiliaryTenantIDs apply to service principals with a client secret (type 1) only"
type AzureIdentitySpec struct {
	// Kept from upstream, which embeds an ObjectMeta here; unused.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// Type is 0 for a user-assigned managed identity, 1 for a service principal with a client secret, 2 for a
	// service principal with a PKCS#12 certificate.
	// +optional
	Type IdentityType `json:"type,omitempty"`

	// ResourceID is the ARM resource ID of a user-assigned identity (type 0).
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	ResourceID string `json:"resourceID,omitempty"`

	// ClientID is the identity's (or application's) client ID.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	ClientID string `json:"clientID,omitempty"`

	// ClientPassword names the Secret holding a service principal's secret (type 1: the Secret's first value) or its
	// certificate (type 2: keys "certificate" and "password"). An empty namespace means the identity's namespace.
	// +optional
	ClientPassword corev1.SecretReference `json:"clientPassword,omitempty"`

	// TenantID is the Entra ID tenant to ask for tokens. Empty uses the node agent's default tenant.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	TenantID string `json:"tenantID,omitempty"`

	// AuxiliaryTenantIDs are further tenants a multi-tenant service principal (type 1) gets tokens from; pods then
	// receive a JSON array: the primary tenant's token first, then one per auxiliary tenant.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	AuxiliaryTenantIDs []string `json:"auxiliaryTenantIDs,omitempty"`

	// ADResourceID is kept from upstream; unused.
	// +optional
	ADResourceID string `json:"adResourceID,omitempty"`

	// ADEndpoint is the Entra ID authority host, for example https://login.microsoftonline.us/. Empty uses the
	// node agent's cloud.
	// +optional
	ADEndpoint string `json:"adEndpoint,omitempty"`

	// Replicas is kept from upstream; unused.
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
}

// AzureIdentityStatus is kept from upstream; nothing writes it.
type AzureIdentityStatus struct {
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	AvailableReplicas int32 `json:"availableReplicas,omitempty"`
}

// AzureIdentity is an Azure identity that pods may be given through AzureIdentityBindings.
// +kubebuilder:object:root=true
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=unapproved, the AAD Pod Identity API kept as upstream defined it"
// +kubebuilder:printcolumn:name="Type",type=integer,JSONPath=`.spec.type`,description="0 managed identity, 1 service principal secret, 2 service principal certificate"
// +kubebuilder:printcolumn:name="Client ID",type=string,JSONPath=`.spec.clientID`
// +kubebuilder:printcolumn:name="Resource ID",type=string,JSONPath=`.spec.resourceID`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AzureIdentity struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AzureIdentitySpec   `json:"spec,omitempty"`
	Status AzureIdentityStatus `json:"status,omitempty"`
}

// IsNamespaced says whether the identity carries the namespaced behaviour annotation.
func (in *AzureIdentity) IsNamespaced() bool {
	return in.Annotations[BehaviorAnnotation] == BehaviorNamespaced
}

// +kubebuilder:object:root=true

// AzureIdentityList is a list of AzureIdentity.
type AzureIdentityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AzureIdentity `json:"items"`
}

// AzureIdentityBindingSpec binds pods labelled aadpodidbinding=<selector> to an AzureIdentity.
type AzureIdentityBindingSpec struct {
	// Kept from upstream, which embeds an ObjectMeta here; unused.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// AzureIdentity is the name of an AzureIdentity in the binding's namespace.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	AzureIdentity string `json:"azureIdentity,omitempty"`

	// Selector is compared for equality with the pod label aadpodidbinding (it is not a label selector).
	// +optional
	// +kubebuilder:validation:MaxLength=63
	Selector string `json:"selector,omitempty"`

	// Weight is kept from upstream; unused.
	// +optional
	Weight int `json:"weight,omitempty"`
}

// AzureIdentityBindingStatus is kept from upstream; nothing writes it.
type AzureIdentityBindingStatus struct {
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	AvailableReplicas int32 `json:"availableReplicas,omitempty"`
}

// AzureIdentityBinding gives pods whose aadpodidbinding label equals its selector the named AzureIdentity.
// +kubebuilder:object:root=true
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=unapproved, the AAD Pod Identity API kept as upstream defined it"
// +kubebuilder:printcolumn:name="Identity",type=string,JSONPath=`.spec.azureIdentity`
// +kubebuilder:printcolumn:name="Selector",type=string,JSONPath=`.spec.selector`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AzureIdentityBinding struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AzureIdentityBindingSpec   `json:"spec,omitempty"`
	Status AzureIdentityBindingStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// AzureIdentityBindingList is a list of AzureIdentityBinding.
type AzureIdentityBindingList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AzureIdentityBinding `json:"items"`
}

// AzureAssignedIdentitySpec records that a pod was given an identity on a node. The assignment controller owns it.
type AzureAssignedIdentitySpec struct {
	// Kept from upstream, which embeds an ObjectMeta here; unused.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// AzureIdentityRef is a full copy of the identity, metadata included (name and resourceVersion tell whether the
	// assignment is current): an embedded resource, whose metadata the apiserver keeps.
	// +optional
	// +kubebuilder:validation:EmbeddedResource
	AzureIdentityRef *AzureIdentity `json:"azureIdentityRef,omitempty"`
	// AzureBindingRef is a full copy of the binding, metadata included.
	// +optional
	// +kubebuilder:validation:EmbeddedResource
	AzureBindingRef *AzureIdentityBinding `json:"azureBindingRef,omitempty"`
	// Pod is the pod's name.
	// +optional
	Pod string `json:"pod,omitempty"`
	// PodNamespace is the pod's namespace.
	// +optional
	PodNamespace string `json:"podNamespace,omitempty"`
	// NodeName is the pod's node.
	// +optional
	NodeName string `json:"nodename,omitempty"`
	// Replicas is kept from upstream; unused.
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
}

// AzureAssignedIdentityStatus says how far the assignment got.
type AzureAssignedIdentityStatus struct {
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// Status is Created, Assigned or Unassigned (empty for objects written before release 1.6).
	// +optional
	Status string `json:"status,omitempty"`
	// +optional
	AvailableReplicas int32 `json:"availableReplicas,omitempty"`
}

// AzureAssignedIdentity is the assignment controller's record of one pod's identity on one node.
// +kubebuilder:object:root=true
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=unapproved, the AAD Pod Identity API kept as upstream defined it"
// +kubebuilder:printcolumn:name="Pod",type=string,JSONPath=`.spec.pod`
// +kubebuilder:printcolumn:name="Pod Namespace",type=string,JSONPath=`.spec.podNamespace`
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=`.spec.nodename`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AzureAssignedIdentity struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AzureAssignedIdentitySpec   `json:"spec,omitempty"`
	Status AzureAssignedIdentityStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// AzureAssignedIdentityList is a list of AzureAssignedIdentity.
type AzureAssignedIdentityList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AzureAssignedIdentity `json:"items"`
}

// AzurePodIdentityExceptionSpec names pod labels whose pods, in the exception's namespace, are served by the node's
// own instance metadata service instead of acrpull.
type AzurePodIdentityExceptionSpec struct {
	// Kept from upstream, which embeds an ObjectMeta here; unused.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// PodLabels excepts a pod when any one of its labels has the key and, compared case-insensitively, the value.
	PodLabels map[string]string `json:"podLabels"`
}

// AzurePodIdentityExceptionStatus is kept from upstream; nothing writes it.
type AzurePodIdentityExceptionStatus struct {
	metav1.ObjectMeta `json:"metadata,omitempty"`
	// +optional
	Status string `json:"status,omitempty"`
}

// AzurePodIdentityException lets pods in its namespace with matching labels reach the node's instance metadata
// service directly.
// +kubebuilder:object:root=true
// +kubebuilder:metadata:annotations="api-approved.kubernetes.io=unapproved, the AAD Pod Identity API kept as upstream defined it"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AzurePodIdentityException struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   AzurePodIdentityExceptionSpec   `json:"spec,omitempty"`
	Status AzurePodIdentityExceptionStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// AzurePodIdentityExceptionList is a list of AzurePodIdentityException.
type AzurePodIdentityExceptionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AzurePodIdentityException `json:"items"`
}
