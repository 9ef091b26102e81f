/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

// rationale says why the controller holds each rule of its ClusterRole. The rules come from the +kubebuilder:rbac
// markers (controller-gen writes config/rbac/role.yaml); the chart copies them with these reasons as comments.
//
// The key is the whole rule, verbs included: a marker that adds a verb or a resource fails `make manifests` until
// someone writes down here why the controller needs it. Keep each reason to what the controller does with the
// permission and what (a ValidatingAdmissionPolicy, the absence of a verb) bounds it.
var rationale = map[string]string{
	"groups=core resources=secrets verbs=create,delete,get,list,patch,watch": `Pull secrets (acr-pull-<binding>,
<binding>-msi-acrpull-secret): create them, merge-patch each refreshed token in place, delete the ones a binding no longer
needs. get/list/watch feed the controller's cache, which holds secret metadata only (labelled secrets) and reads legacy
unlabelled ones by name; get also reads, live, the Secret a service-principal binding names in its own namespace
(labelled acr.microsoft.com/service-principal=true, whose metadata a second cache watches). RBAC cannot grant metadata
without data, so these verbs can read any Secret. update and * are not granted. The secret ValidatingAdmissionPolicy limits create/patch to dockerconfigjson secrets owned by one
AcrPullBinding, and delete to secrets owned by an AcrPullBinding.`,

	"groups=core resources=serviceaccounts verbs=get,list,patch,watch": `Attach a pull secret to the binding's target
service account and detach it from accounts it no longer targets (a resourceVersion-guarded patch of imagePullSecrets);
watch accounts so a recreated one gets its secret back. No create, update or delete. The service-account
ValidatingAdmissionPolicy allows only adding or removing acr-pull-* / *-msi-acrpull-secret names.`,

	"groups=core resources=serviceaccounts/token verbs=create": `Workload identity: a TokenRequest for the binding's
serviceAccountRef, presented to Entra ID as a client assertion. The token-request ValidatingAdmissionPolicy pins the
request to exactly one audience, the configured tokenAudience, so these tokens cannot authenticate to the apiserver.`,

	"groups=acrpull.microsoft.com,msi-acrpull.microsoft.com resources=acrpullbindings verbs=get,list,patch,update,watch": `Reconcile
both API groups (v1beta2 and legacy v1beta1); patch/update add and remove the finalizer that lets the controller
unreference and delete a binding's secret before the binding goes away. No create or delete.`,

	"groups=acrpull.microsoft.com,msi-acrpull.microsoft.com resources=acrpullbindings/finalizers verbs=update": `Secrets carry a
controller ownerReference with blockOwnerDeletion; clusters running the OwnerReferencesPermissionEnforcement admission
plugin require update on the owner's finalizers subresource to set it.`,

	"groups=acrpull.microsoft.com,msi-acrpull.microsoft.com resources=acrpullbindings/status verbs=get,patch,update": `Report
token times, the Ready condition and errors in the binding's status.`,

	"groups=events.k8s.io resources=events verbs=create,patch": `Events on bindings (a Warning when a binding enters a
new failure), which live in the bindings' namespaces, hence cluster-wide.`,
}
