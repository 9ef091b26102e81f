/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/acrpull/acrpull/internal/harness/testenv"
	"github.com/acrpull/acrpull/internal/upstreamflag"
)

// msiAcrpullFlags are the flags of msi-acrpull's controller (Azure/msi-acrpull cmd/main.go at v0.1.24, its earlier
// manifests' spellings, and controller-runtime's zap flags) with what each is here. config/helm/README.md's table
// "What differs from msi-acrpull" holds these rows as Markdown renders them.
var msiAcrpullFlags = []upstreamflag.Flag{
	{Name: "metrics-bind-address", Default: ":8080", Disposition: upstreamflag.Same},
	{Name: "health-probe-bind-address", Default: ":8081", Disposition: upstreamflag.Same},
	{Name: "leader-elect", Bool: true, Default: "false", Disposition: upstreamflag.Same, Why: "the Lease is still `aks.azure.com`"},
	{Name: "service-account-token-audience", Default: "api://AzureCRTokenExchange", Disposition: upstreamflag.Same},
	{Name: "ttl-rotation-fraction", Default: "0.5", Disposition: upstreamflag.Same},
	{Name: "label-selector", Default: "", Disposition: upstreamflag.Same},
	{Name: "allowed-acr-server-suffixes", Default: "azurecr.io", Disposition: upstreamflag.Same, Why: "comma-separated and repeatable, normalised as msi-acrpull did; unset allows the Azure clouds' registries (azurecr.io, azurecr.us, azurecr.cn) where msi-acrpull checked nothing, and an empty value is refused"},
	{Name: "metrics-addr", Default: "127.0.0.1:8080", Disposition: upstreamflag.Renamed, Here: "metrics-bind-address", Why: "its manifests' spelling, still accepted"},
	{Name: "enable-leader-election", Bool: true, Default: "false", Disposition: upstreamflag.Renamed, Here: "leader-elect", Why: "its manifests' spelling, still accepted"},
	{Name: "zap-devel", Bool: true, Default: "false", Disposition: upstreamflag.Same, Why: "default false here (JSON lines at info), true in msi-acrpull (console at debug)"},
	{Name: "zap-log-level", Default: "info", Disposition: upstreamflag.Same},
	{Name: "zap-encoder", Default: "json", Disposition: upstreamflag.Same},
	{Name: "zap-stacktrace-level", Default: "error", Disposition: upstreamflag.Same},
	{Name: "zap-time-encoding", Default: "epoch", Disposition: upstreamflag.Same},
}

// parseAll parses args as the controller does, its zap flags included.
func parseAll(args ...string) (any, error) {
	fs := flag.NewFlagSet("acrpull", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	(&zap.Options{}).BindFlags(fs)
	opts, _, err := parseFlags(fs, args, func(string) string { return "" })
	return opts, err
}

// Every msi-acrpull flag is accepted alone with a value of its kind; a renamed one means exactly what its new
// spelling means.
func TestEveryMsiAcrpullFlagIsAccepted(t *testing.T) {
	for _, f := range msiAcrpullFlags {
		arg := "--" + f.Name
		if !f.Bool {
			arg += "=" + f.Default
		} else {
			arg += "=true"
		}
		got, err := parseAll(arg)
		if err != nil {
			t.Errorf("%s: %v", arg, err)
			continue
		}
		if f.Disposition != upstreamflag.Renamed {
			continue
		}
		hereArg := "--" + f.Here + arg[len("--"+f.Name):]
		want, err := parseAll(hereArg)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s does not mean %s (%v)", arg, hereArg, err)
		}
	}
}

// config/helm/README.md's table of msi-acrpull's flags is the one in the code.
func TestMsiAcrpullFlagsDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "config", "helm", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if rows := upstreamflag.Markdown(msiAcrpullFlags); !bytes.Contains(doc, []byte(rows)) {
		t.Errorf("config/helm/README.md lacks the flag rows of \"What differs from msi-acrpull\"; they are:\n%s", rows)
	}
}
