/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// kubenetEvidence says what shows that this node's pods share a Linux bridge (kubenet), or "" when nothing does. On a
// bridge, a pod with CAP_NET_RAW can answer ARP for another pod's address and so receive that pod's tokens, since the
// agent knows its callers by address. Upstream's agent read only the kubelet's flags file; kubelets since 1.24 have
// no --network-plugin flag and kubenet became the CNI bridge plugin, so the CNI configuration the container runtime
// uses (the first file by name in the directory) is read as well. Files that do not exist are no evidence; files that
// exist and cannot be read are an error, so the check never passes by accident.
func kubenetEvidence(kubeletConfig, cniConfigDir string) (string, error) {
	if kubeletConfig != "" {
		data, err := os.ReadFile(kubeletConfig)
		switch {
		case err == nil:
			for _, field := range strings.Fields(string(data)) {
				if strings.Trim(field, `"'`) == "--network-plugin=kubenet" {
					return kubeletConfig + " sets --network-plugin=kubenet", nil
				}
			}
		case !errors.Is(err, fs.ErrNotExist):
			return "", fmt.Errorf("reading the kubelet's flags: %w", err)
		}
	}
	if cniConfigDir == "" {
		return "", nil
	}
	entries, err := os.ReadDir(cniConfigDir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reading the CNI configuration: %w", err)
	}
	// The runtime loads the first of these by name (libcni's ConfFiles order).
	var names []string
	for _, e := range entries {
		if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".conf" || ext == ".conflist" || ext == ".json") {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	slices.Sort(names)
	file := filepath.Join(cniConfigDir, names[0])
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("reading the CNI configuration: %w", err)
	}
	var conf struct {
		Type    string `json:"type"`
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(data, &conf); err != nil {
		return "", fmt.Errorf("%s is not a CNI configuration: %w", file, err)
	}
	types := []string{conf.Type}
	for _, p := range conf.Plugins {
		types = append(types, p.Type)
	}
	if slices.Contains(types, "bridge") {
		return file + " uses the bridge plugin (kubenet)", nil
	}
	return "", nil
}
