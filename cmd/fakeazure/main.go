/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command fakeazure serves the fake Azure cloud (Entra ID, IMDS, ACR token endpoints and registries proxied to real
// ones) as a process, so a controller running as its own process can be pointed at it with nothing but standard
// configuration:
//
//	HTTPS_PROXY=$(cat STATE/proxy-url) HTTP_PROXY=$(cat STATE/proxy-url) NO_PROXY=127.0.0.1,localhost \
//	SSL_CERT_FILE=STATE/ca.pem acrpull ...
//
// An admin API on its own loopback port reads counters and changes the fake while it runs: GET /counts,
// DELETE /counts, POST /config (a JSON Config, additive), POST /faults ({"imds-token": {"status": 429}}) and
// DELETE /faults. Both listeners must be loopback addresses: the fake hands out tokens to whoever asks.
// testdata/example.json shows the configuration file.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/acrpull/acrpull/internal/harness/azurefake"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "fakeazure:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends; it returns an error only when the fake could not start.
func run(ctx context.Context, args []string, logOut io.Writer) error {
	flags := flag.NewFlagSet("fakeazure", flag.ContinueOnError)
	flags.SetOutput(logOut)
	listen := flags.String("listen", "127.0.0.1:0", "Loopback address of the proxy, which clients use as HTTPS_PROXY and HTTP_PROXY.")
	adminListen := flags.String("admin-listen", "127.0.0.1:0", "Loopback address of the admin API (counters, faults, configuration).")
	stateDir := flags.String("state-dir", ".", "Directory that receives ca.pem, registry-token-cert.pem, proxy-url and admin-url.")
	configFile := flags.String("config", "", "JSON configuration applied at start (identities, federated credentials, issuers, registries, roles, lifetimes, faults).")
	logLevel := flags.String("log-level", "info", "debug, info, warn or error; every request is logged at info, never with its tokens.")
	if err := flags.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	for name, addr := range map[string]string{"--listen": *listen, "--admin-listen": *adminListen} {
		if err := requireLoopback(addr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}

	cloud, err := azurefake.New(azurefake.Options{Addr: *listen, Logger: logger})
	if err != nil {
		return err
	}
	if *configFile != "" {
		if err := applyConfigFile(cloud, *configFile); err != nil {
			return err
		}
	}
	if err := cloud.Start(); err != nil {
		return err
	}
	defer cloud.Close()
	adminListener, err := net.Listen("tcp", *adminListen)
	if err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	adminURL := "http://" + adminListener.Addr().String()
	admin := &http.Server{Handler: adminHandler(cloud, logger), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = admin.Serve(adminListener) }()
	defer func() {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = admin.Shutdown(shutdownCtx)
	}()
	if err := writeState(*stateDir, cloud, adminURL); err != nil {
		return err
	}
	logger.Info("fake Azure is serving", "proxy", cloud.ProxyURL().String(), "admin", adminURL, "stateDir", *stateDir)
	<-ctx.Done()
	logger.Info("stopping")
	return nil
}

// requireLoopback refuses listen addresses other machines could reach.
func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address", addr)
}

func applyConfigFile(cloud *azurefake.Cloud, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading the configuration: %w", err)
	}
	var cfg azurefake.Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	if err := cloud.ApplyConfig(cfg); err != nil {
		return fmt.Errorf("applying %s: %w", path, err)
	}
	return nil
}

// writeState writes the files scripts need to reach the fake. Each file appears whole (written aside, then renamed),
// and admin-url comes last, so a script that waits for it finds every other file complete.
func writeState(dir string, cloud *azurefake.Cloud, adminURL string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	files := []struct {
		name    string
		content []byte
	}{
		{"ca.pem", cloud.CACertPEM()},
		{"registry-token-cert.pem", cloud.RegistryTokenCertPEM()},
		{"proxy-url", []byte(cloud.ProxyURL().String() + "\n")},
		{"admin-url", []byte(adminURL + "\n")},
	}
	for _, f := range files {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path+".tmp", f.content, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return fmt.Errorf("writing %s: %w", f.name, err)
		}
	}
	return nil
}
