/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package acrpullbinding

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// observeIssuer remembers the issuer of a service-account token the apiserver issued, read from the token itself:
// what Entra ID compares with a federated credential is what the apiserver put there, whatever its flags say.
func (r *Reconciler) observeIssuer(token string) {
	if iss := jwtIssuer(token); iss != "" {
		r.issuer.Store(&iss)
	}
}

// federationHint says exactly which federated identity credential Entra ID is missing: the issuer of this cluster's
// service-account tokens, the federated account as subject, and the audience the controller asks for.
func (r *Reconciler) federationHint(s *scope) string {
	issuer := "this cluster's service-account issuer (kubectl get --raw /.well-known/openid-configuration)"
	if iss := r.issuer.Load(); iss != nil {
		issuer = fmt.Sprintf("%q", *iss)
	}
	w := s.desired.workload
	subject := "system:serviceaccount:" + s.binding.object().GetNamespace() + ":" + w.serviceAccount
	return fmt.Sprintf("identity %s needs a federated identity credential with issuer %s, subject %q and audience %q",
		w.clientID, issuer, subject, r.Config.ServiceAccountTokenAudience)
}

// jwtIssuer reads the iss claim of a JWT without verifying it (the apiserver just issued it), or "".
func jwtIssuer(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Issuer string `json:"iss"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return ""
	}
	return claims.Issuer
}
