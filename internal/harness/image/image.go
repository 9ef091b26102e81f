/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package image assembles acrpull's container image without a container engine. One image serves the chart's three
// workloads: the static binaries /acrpull, /acrpull-nmi and /acrpull-mic, and, unpacked from Debian's packages, what
// the node agent runs besides itself (iptables with both of its backends, conntrack) and the shared libraries those
// load, CA certificates and a nonroot user (65532, which the chart runs the controllers as).
//
// The packages come from the build machine's apt sources (a Debian of the same architecture), downloaded once into a
// cache directory; nothing is installed on the machine.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// Binaries are the commands built into the image's root, by their ./cmd directory names.
var Binaries = []string{"acrpull", "acrpull-nmi", "acrpull-mic"}

// Packages are the Debian packages unpacked into the image: iptables (both backends) and conntrack for the node
// agent, their libraries, the C library they all load, /etc/protocols (netbase; iptables resolves "tcp" there) and
// the CA certificates.
var Packages = []string{
	"iptables", "libip4tc2", "libip6tc2", "libxtables12", "libnftnl11", "libmnl0", "libnetfilter-conntrack3",
	"libnfnetlink0", "conntrack", "netbase", "libc6", "libgcc-s1", "ca-certificates",
}

// NonrootUID is the user the image runs as unless told otherwise (the chart sets it for the controllers and runs the
// node agent as root).
const NonrootUID = 65532

// Options configure a build.
type Options struct {
	// ModuleRoot is the acrpull module, whose ./cmd/... are built.
	ModuleRoot string
	// CacheDir keeps downloaded Debian packages between builds; empty is acrpull/image in the user's cache directory
	// (~/.cache), next to the test platform's binaries.
	CacheDir string
	// Version labels the image (org.opencontainers.image.version).
	Version string
	// Trimpath builds release binaries, free of the build machine's paths. Tests leave it off so that the binaries
	// reuse the packages the other tests compiled.
	Trimpath bool
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// epoch is every file's modification time, so equal inputs make equal layers.
var epoch = time.Unix(0, 0)

// Build returns the image: a layer of Debian userland and a layer of acrpull's binaries, OCI media types, for the
// machine's architecture.
func Build(ctx context.Context, o Options) (v1.Image, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.CacheDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return nil, err
		}
		o.CacheDir = filepath.Join(cache, "acrpull", "image")
	}
	work, err := os.MkdirTemp("", "acrpull-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)

	rootfs := filepath.Join(work, "rootfs")
	if err := debianUserland(ctx, o, rootfs); err != nil {
		return nil, err
	}
	userland, err := dirLayer(rootfs)
	if err != nil {
		return nil, fmt.Errorf("packing the Debian userland: %w", err)
	}

	bin := filepath.Join(work, "bin")
	// Builds running at once (the tests of several packages) compile one after another: the first fills the Go build
	// cache, the others then only link, instead of all compiling the same packages side by side.
	unlock, err := lockFile(filepath.Join(o.CacheDir, "build.lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, name := range Binaries {
		fmt.Fprintf(o.Log, "building %s\n", name)
		ldflags := "-s -w"
		if o.Version != "" {
			// --version, the start log line and acrpull_build_info then name the image's version.
			ldflags += " -X github.com/acrpull/acrpull/internal/buildinfo.version=" + o.Version
		}
		args := []string{"build", "-ldflags=" + ldflags, "-o", filepath.Join(bin, name)}
		if o.Trimpath {
			args = append(args, "-trimpath")
		}
		build := exec.CommandContext(ctx, "go", append(args, "./cmd/"+name)...)
		build.Dir = o.ModuleRoot
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
		}
	}
	binaries, err := dirLayer(bin)
	if err != nil {
		return nil, fmt.Errorf("packing the binaries: %w", err)
	}

	img, err := mutate.AppendLayers(mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON),
		userland, binaries)
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture, cfg.Created = "linux", runtime.GOARCH, v1.Time{Time: epoch}
	cfg.Config.User = fmt.Sprintf("%d:%d", NonrootUID, NonrootUID)
	cfg.Config.Entrypoint = []string{"/acrpull"}
	cfg.Config.WorkingDir = "/"
	cfg.Config.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    "acrpull",
		"org.opencontainers.image.source":   "https://github.com/acrpull/acrpull",
		"org.opencontainers.image.version":  o.Version,
		"org.opencontainers.image.licenses": "MIT",
	}
	return mutate.ConfigFile(img, cfg)
}

// debianUserland unpacks Packages into rootfs and finishes what their maintainer scripts would have done: the
// iptables alternatives (nf_tables, the default of current distributions; the node agent picks the node's backend
// itself), the CA bundle, the users, and the loader's cache.
func debianUserland(ctx context.Context, o Options, rootfs string) error {
	debs, err := download(ctx, o)
	if err != nil {
		return err
	}
	for _, deb := range debs {
		if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, rootfs).CombinedOutput(); err != nil {
			return fmt.Errorf("unpacking %s: %w\n%s", filepath.Base(deb), err, out)
		}
	}
	for _, dir := range []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale"} {
		if err := os.RemoveAll(filepath.Join(rootfs, dir)); err != nil {
			return err
		}
	}
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		if err := os.Symlink("xtables-nft-multi", filepath.Join(rootfs, "usr/sbin", tool)); err != nil {
			return err
		}
	}
	if err := caBundle(rootfs); err != nil {
		return err
	}
	files := map[string]string{
		"etc/passwd": fmt.Sprintf("root:x:0:0:root:/root:/usr/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/usr/sbin/nologin\n", NonrootUID, NonrootUID),
		"etc/group":  fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", NonrootUID),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(rootfs, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	// proc, sys and dev are where a container runtime mounts its filesystems.
	for _, dir := range []string{"tmp", "run", "root", "home/nonroot", "proc", "sys", "dev"} {
		if err := os.MkdirAll(filepath.Join(rootfs, dir), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), 0o1777|fs.ModeSticky); err != nil {
		return err
	}
	// The loader finds libraries in the multiarch directories through its cache, which ldconfig writes.
	if out, err := exec.CommandContext(ctx, "ldconfig", "-r", rootfs).CombinedOutput(); err != nil {
		return fmt.Errorf("ldconfig: %w\n%s", err, out)
	}
	return nil
}

// download fetches the current version of each package into the cache, once, and returns their paths. Builds
// running at once (the tests of several packages) take turns: one downloads while the others wait on the lock, so
// none reads a package half written.
func download(ctx context.Context, o Options) ([]string, error) {
	dir := filepath.Join(o.CacheDir, "debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()
	return downloadLocked(ctx, o, dir)
}

// lockFile takes an exclusive lock on path (created if missing), waiting for other processes that hold it.
func lockFile(path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing the file releases the lock
}

func downloadLocked(ctx context.Context, o Options, dir string) ([]string, error) {
	debs, missing := cached(dir)
	if len(missing) > 0 {
		fmt.Fprintf(o.Log, "downloading %s\n", strings.Join(missing, " "))
		get := func() ([]byte, error) {
			cmd := exec.CommandContext(ctx, "apt-get", append([]string{"download", "-qq"}, missing...)...)
			cmd.Dir = dir
			return cmd.CombinedOutput()
		}
		if _, err := get(); err != nil {
			// A fresh machine may have no package lists yet, or stale ones.
			if out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
				return nil, fmt.Errorf("apt-get update: %w\n%s", err, out)
			}
			if out, err := get(); err != nil {
				return nil, fmt.Errorf("apt-get download %s: %w\n%s", strings.Join(missing, " "), err, out)
			}
		}
		if debs, missing = cached(dir); len(missing) > 0 {
			return nil, fmt.Errorf("apt-get download left no file for %s", strings.Join(missing, " "))
		}
	}
	return debs, nil
}

// cached returns the package files in dir (the newest name of each package) and the packages that have none.
func cached(dir string) (debs, missing []string) {
	for _, pkg := range Packages {
		found, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
		if len(found) == 0 {
			missing = append(missing, pkg)
			continue
		}
		slices.Sort(found)
		debs = append(debs, found[len(found)-1])
	}
	return debs, missing
}

// caBundle writes /etc/ssl/certs/ca-certificates.crt from the certificates ca-certificates ships, as its
// update-ca-certificates would: Go programs read that file.
func caBundle(rootfs string) error {
	var bundle bytes.Buffer
	err := filepath.WalkDir(filepath.Join(rootfs, "usr/share/ca-certificates"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".crt") {
			return err
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		bundle.Write(bytes.TrimSpace(pem))
		bundle.WriteByte('\n')
		return nil
	})
	if err != nil {
		return fmt.Errorf("collecting CA certificates: %w", err)
	}
	if bundle.Len() == 0 {
		return fmt.Errorf("ca-certificates held no certificates")
	}
	certs := filepath.Join(rootfs, "etc/ssl/certs")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(certs, "ca-certificates.crt"), bundle.Bytes(), 0o644)
}

// dirLayer packs a directory as a layer rooted at /: files owned by root (home/nonroot by the nonroot user), the
// epoch as every time, entries in lexical order.
func dirLayer(root string) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == root {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		var link string
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		h.Uid, h.Gid, h.Uname, h.Gname = 0, 0, "", ""
		if h.Name == "home/nonroot/" {
			h.Uid, h.Gid = NonrootUID, NonrootUID
		}
		h.ModTime, h.AccessTime, h.ChangeTime = epoch, time.Time{}, time.Time{}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := io.Copy(tw, f); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// Unpack writes an image's flattened filesystem into dir, as a container runtime lays it out: owners and modes as
// the layers say (when run as root), later layers over earlier ones.
func Unpack(ctx context.Context, img v1.Image, dir string) error {
	flat := mutate.Extract(img)
	defer flat.Close()
	untar := exec.CommandContext(ctx, "tar", "-x", "--same-owner", "-p", "-C", dir)
	untar.Stdin = flat
	if out, err := untar.CombinedOutput(); err != nil {
		return fmt.Errorf("unpacking the image: %w\n%s", err, out)
	}
	return nil
}
