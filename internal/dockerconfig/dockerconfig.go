/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package dockerconfig renders and reads the .dockerconfigjson payload of kubernetes.io/dockerconfigjson secrets.
package dockerconfig

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// TokenUsername is the user name ACR expects with a token as the password: the null GUID marks an ACR token.
const TokenUsername = "00000000-0000-0000-0000-000000000000"

// email is what msi-acrpull wrote; kept so secrets are byte-for-byte familiar to its users.
const email = "msi-acrpull@azurecr.io"

// Entry is one registry's credentials. Password is secret.
type Entry struct {
	Username string `json:"username"`
	Password string `json:"password"`
	Email    string `json:"email,omitempty"`
	Auth     string `json:"auth"`
}

type config struct {
	Auths map[string]Entry `json:"auths"`
}

// Render returns the payload that lets a client pull from server with an ACR token. The key is the server exactly as
// configured, which is what kubelet matches image references against.
func Render(server, token string) ([]byte, error) {
	return json.Marshal(config{Auths: map[string]Entry{server: {
		Username: TokenUsername,
		Password: token,
		Email:    email,
		Auth:     base64.StdEncoding.EncodeToString([]byte(TokenUsername + ":" + token)),
	}}})
}

// Lookup returns the credentials for server from a payload, preferring the explicit username and password and
// falling back to the auth field, as kubelet does.
func Lookup(payload []byte, server string) (Entry, error) {
	var cfg config
	if err := json.Unmarshal(payload, &cfg); err != nil {
		return Entry{}, errors.New("payload is not a docker config")
	}
	e, ok := cfg.Auths[server]
	if !ok {
		return Entry{}, fmt.Errorf("no credentials for %q", server)
	}
	if e.Username == "" && e.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(e.Auth)
		if err != nil {
			return Entry{}, errors.New("auth field is not base64")
		}
		for i := range raw {
			if raw[i] == ':' {
				e.Username, e.Password = string(raw[:i]), string(raw[i+1:])
				break
			}
		}
	}
	return e, nil
}
