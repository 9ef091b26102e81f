/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// profiler saves pprof profiles of the controller, and of kube-apiserver (which serves them to cluster admins), into
// a directory, for `go tool pprof`.
type profiler struct {
	dir string
	// controller and apiserver are where each serves /debug/pprof, and the client that may read it.
	controller, apiserver pprofTarget
	logf                  func(format string, args ...any)
}

type pprofTarget struct {
	base   string
	client *http.Client
}

// cpu records CPU profiles of the controller and the apiserver over the next d in the background, into
// <prefix>-controller-cpu.pprof and <prefix>-apiserver-cpu.pprof; wait blocks until both are saved.
func (p *profiler) cpu(ctx context.Context, prefix string, d time.Duration) (wait func()) {
	done := make(chan struct{}, 2)
	for name, target := range map[string]pprofTarget{"controller": p.controller, "apiserver": p.apiserver} {
		go func() {
			defer func() { done <- struct{}{} }()
			url := fmt.Sprintf("%s/profile?seconds=%d", target.base, int(d.Seconds()))
			p.save(ctx, target, url, prefix+"-"+name+"-cpu.pprof", d+30*time.Second)
		}()
	}
	return func() { <-done; <-done }
}

// heap saves the controller's live heap after a forced collection.
func (p *profiler) heap(ctx context.Context, name string) {
	p.save(ctx, p.controller, p.controller.base+"/heap?gc=1", name, 30*time.Second)
}

func (p *profiler) save(ctx context.Context, target pprofTarget, url, name string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := target.client.Do(req)
	if err != nil {
		p.logf("profile %s: %v", name, err)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		p.logf("profile %s: %s", name, resp.Status)
		return
	}
	path := filepath.Join(p.dir, name)
	f, err := os.Create(path)
	if err != nil {
		p.logf("profile %s: %v", name, err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		p.logf("profile %s: %v", name, err)
		return
	}
	p.logf("saved %s (go tool pprof %s)", path, path)
}
