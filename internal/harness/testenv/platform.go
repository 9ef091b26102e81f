/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package testenv

import (
	"fmt"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

// StartWithCloud starts a control plane and a fake Azure cloud whose Entra ID trusts the control plane's
// service-account issuer, as every suite that federates service accounts needs. stop ends both.
func StartWithCloud(opts azurefake.Options) (env *Env, cloud *azurefake.Cloud, stop func(), err error) {
	if env, err = Start(); err != nil {
		return nil, nil, nil, err
	}
	if cloud, err = azurefake.New(opts); err == nil {
		err = cloud.Start()
	}
	if err != nil {
		_ = env.Stop()
		return nil, nil, nil, fmt.Errorf("fake azure: %w", err)
	}
	cloud.TrustIssuer(Issuer, env.SigningKey)
	return env, cloud, func() { cloud.Close(); _ = env.Stop() }, nil
}
