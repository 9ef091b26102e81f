/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Command fakeazure serves the fake Azure cloud as a process: point a controller at it with
// HTTPS_PROXY=$(cat STATE/proxy-url) HTTP_PROXY=... NO_PROXY=127.0.0.1,localhost SSL_CERT_FILE=STATE/ca.pem.
//
// An admin API on its own loopback port reads counters and changes the fake while it runs:
// GET /counts, POST /config (a JSON Config, additive), POST /faults ({"imds-token": {...}}), DELETE /faults.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/acrpull/acrpull/internal/azurefake"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "Proxy address clients use as HTTPS_PROXY.")
	admin := flag.String("admin-listen", "127.0.0.1:0", "Admin API address (counters, faults, config).")
	stateDir := flag.String("state-dir", ".", "Directory for ca.pem, registry-token-cert.pem, proxy-url and admin-url.")
	configFile := flag.String("config", "", "JSON Config applied at start.")
	flag.Parse()

	cloud, err := azurefake.New(azurefake.Options{Addr: *listen})
	if err != nil {
		log.Fatal(err)
	}
	if *configFile != "" {
		var cfg azurefake.Config
		data, err := os.ReadFile(*configFile)
		if err == nil {
			err = json.Unmarshal(data, &cfg)
		}
		if err == nil {
			err = cloud.ApplyConfig(cfg)
		}
		if err != nil {
			log.Fatalf("config %s: %v", *configFile, err)
		}
	}
	if err := cloud.Start(); err != nil {
		log.Fatal(err)
	}
	defer cloud.Close()
	adminListener, err := net.Listen("tcp", *admin)
	if err != nil {
		log.Fatal(err)
	}
	adminURL := "http://" + adminListener.Addr().String()
	for name, content := range map[string][]byte{
		"ca.pem": cloud.CACertPEM(), "registry-token-cert.pem": cloud.RegistryTokenCertPEM(),
		"proxy-url": []byte(cloud.ProxyURL().String()), "admin-url": []byte(adminURL),
	} {
		if err := os.WriteFile(filepath.Join(*stateDir, name), content, 0o644); err != nil {
			log.Fatal(err)
		}
	}
	server := &http.Server{Handler: adminHandler(cloud)}
	go func() { _ = server.Serve(adminListener) }()
	fmt.Printf("fake Azure: proxy %s, admin %s, state in %s\n", cloud.ProxyURL(), adminURL, *stateDir)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	_ = server.Shutdown(context.Background())
}

func adminHandler(cloud *azurefake.Cloud) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(cloud.Counts())
	})
	mux.HandleFunc("DELETE /counts", func(w http.ResponseWriter, _ *http.Request) { cloud.ResetCounts() })
	mux.HandleFunc("POST /config", func(w http.ResponseWriter, r *http.Request) {
		var cfg azurefake.Config
		if err := json.NewDecoder(r.Body).Decode(&cfg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := cloud.ApplyConfig(cfg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("POST /faults", func(w http.ResponseWriter, r *http.Request) {
		var faults map[azurefake.Endpoint]azurefake.FaultConfig
		if err := json.NewDecoder(r.Body).Decode(&faults); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := cloud.ApplyConfig(azurefake.Config{Faults: faults}); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, _ *http.Request) { cloud.ClearFaults() })
	return mux
}
