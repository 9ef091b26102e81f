/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package v1beta2

// ConditionReady is True while the pull secret holds an unexpired credential minted from the current spec and is
// attached to the target service account.
const ConditionReady = "Ready"

// Reasons of the Ready condition. Each names what the user or the operator can act on; v1beta1 bindings use them too.
const (
	// ReasonTokenMinted: the credential is current and attached.
	ReasonTokenMinted = "TokenMinted"
	// ReasonServiceAccountNotFound: the target or the federated service account does not exist (yet).
	ReasonServiceAccountNotFound = "ServiceAccountNotFound"
	// ReasonIdentityNotFederated: Entra ID refused the service-account assertion (no matching federated credential).
	ReasonIdentityNotFederated = "IdentityNotFederated"
	// ReasonIdentityNotFound: the identity is unknown, or not assigned to the node (managed identity).
	ReasonIdentityNotFound = "IdentityNotFound"
	// ReasonIdentityMissing: no identity is named by the spec, the service account's annotations or the controller
	// defaults.
	ReasonIdentityMissing = "IdentityMissing"
	// ReasonRegistryDenied: the registry refused the identity's token (no role on the registry, audience refused).
	ReasonRegistryDenied = "RegistryDenied"
	// ReasonServerNotAllowed: the server is outside --allowed-acr-server-suffixes; no token was sent anywhere.
	ReasonServerNotAllowed = "ServerNotAllowed"
	// ReasonAuthorityHostNotAllowed: spec.acr.cloudConfig.entraAuthorityHost is neither a known Azure cloud's Entra ID
	// authority nor in --allowed-authority-hosts; no service-account token was requested or sent anywhere.
	ReasonAuthorityHostNotAllowed = "AuthorityHostNotAllowed"
	// ReasonAzureThrottled: an Azure endpoint answered 429; the controller waits as told by Retry-After. Like
	// AzureUnavailable, it leaves Ready True while the secret's token is valid.
	ReasonAzureThrottled = "AzureThrottled"
	// ReasonAzureUnavailable: an Azure endpoint failed or could not be reached; retried with backoff. While the secret
	// still holds an unexpired token minted from the current spec, Ready stays True with this reason (pulls work) and
	// status.error says what failed; Ready turns False if the token expires first.
	ReasonAzureUnavailable = "AzureUnavailable"
	// ReasonTokenInvalid: Azure returned a token acrpull cannot use (no expiry, unparsable).
	ReasonTokenInvalid = "TokenInvalid"
	// ReasonServiceAccountTokenFailed: the apiserver refused to issue the federated service account's token.
	ReasonServiceAccountTokenFailed = "ServiceAccountTokenFailed"
	// ReasonInvalidSpec: the spec cannot work and admission could not tell (for example a v1beta1 binding with no
	// server and no ACR_SERVER default).
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonKubernetesAPIError: the apiserver failed a read or write the pass needed before a credential could be
	// minted or written (not Azure's fault); the pass is retried.
	ReasonKubernetesAPIError = "KubernetesAPIError"
)

// ReasonSecretConflict: a secret with the binding's secret name exists and belongs to something else; acrpull does
// not take it over.
const ReasonSecretConflict = "SecretConflict"

// ReasonIdentityNotAllowed: the administrator's managed-identity allow-list (--managed-identity-allow-list) does not
// let the binding's namespace use the managed identity; no token was requested, and an existing secret is no longer
// refreshed.
const ReasonIdentityNotAllowed = "IdentityNotAllowed"

// ConditionVerified says whether the registry let the credential last written to the pull secret read the repository
// of the binding's scope: after each new credential the controller asks the registry for one tag of that repository
// with it (once per credential, however many bindings share it). It is absent when pull verification is off
// (--verify-pull=false) or no credential was written yet.
const ConditionVerified = "Verified"

// Reasons of the Verified condition.
const (
	// ReasonPullVerified (Verified=True): the registry listed the repository's tags with the credential.
	ReasonPullVerified = "PullVerified"
	// ReasonRepositoryNotFound: the credential may read the repository, but the registry has no repository of that
	// name (a typo in the scope, or nothing pushed yet).
	ReasonRepositoryNotFound = "RepositoryNotFound"
	// ReasonScopeDenied: the registry refused the credential for the repository (the identity has no pull right on
	// it), or the scope asks for no pull action.
	ReasonScopeDenied = "ScopeDenied"
	// ReasonRegistryUnreachable: the registry gave no answer about the repository (no response, a 5xx, throttling, a
	// redirect, which is not followed with a token); checked again at the next refresh.
	ReasonRegistryUnreachable = "RegistryUnreachable"
	// ReasonRegistryWideScope (Verified=Unknown): a registry-wide credential (a v1beta1 binding without scope) names
	// no repository to check; the registry accepted the identity when it issued the credential.
	ReasonRegistryWideScope = "RegistryWideScope"
)

// Reasons of service-principal bindings (spec.auth.servicePrincipal) whose Secret cannot be used. Nothing is sent to
// Entra ID, and an existing pull secret is kept until its token expires.
const (
	// ReasonServicePrincipalSecretNotFound: spec.auth.servicePrincipal.secretRef names no Secret of the binding's
	// namespace.
	ReasonServicePrincipalSecretNotFound = "ServicePrincipalSecretNotFound"
	// ReasonServicePrincipalSecretInvalid: the Secret lacks the acr.microsoft.com/service-principal label, holds
	// none or more than one of the credential keys, holds a certificate that does not open (or whose key is not RSA
	// or does not match it), or Entra ID refused the credential (a wrong or expired client secret, a certificate not
	// registered on the application).
	ReasonServicePrincipalSecretInvalid = "ServicePrincipalSecretInvalid"
)
