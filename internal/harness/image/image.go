/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

// Package image assembles acrpull's container image without a container engine. One image serves the chart's three
// workloads: the static binaries /acrpull, /acrpull-nmi and /acrpull-mic, and, unpacked from Debian's packages, what
// the node agent runs besides itself (iptables with both of its backends, conntrack) and the shared libraries those
// load, CA certificates and a nonroot user (65532, which the chart runs the controllers as).
//
// The packages come straight from a Debian mirror over HTTPS, verified from the release's signature by Debian's archive
// keys down to each package's SHA256, and are unpacked in Go: a build needs Go and the mirror, not a Debian machine,
// and builds any architecture Debian has. Nothing is installed on the machine.
package image

import (
	"archive/tar"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/acrpull/acrpull/internal/harness/buildinputs"
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
	// CacheDir keeps downloaded Debian indexes and packages (by their SHA256) and the latest built images between
	// builds; empty is acrpull/image in the user's cache directory (~/.cache), next to the test platform's binaries.
	CacheDir string
	// Version labels the image (org.opencontainers.image.version).
	Version string
	// Trimpath builds release binaries, free of the build machine's paths. Tests leave it off so that the binaries
	// reuse the packages the other tests compiled.
	Trimpath bool
	// Arch is the image's architecture, as GOARCH names it; empty is the build machine's. Nothing in a build runs
	// on the machine, so any architecture Debian has can be built anywhere.
	Arch string
	// DebianMirror and SecurityMirror are the base URLs of a Debian mirror and of a Debian security mirror; empty
	// is $ACRPULL_DEBIAN_MIRROR and $ACRPULL_DEBIAN_SECURITY_MIRROR, else Debian's own (DefaultDebianMirror,
	// DefaultSecurityMirror). What they serve is verified against Debian's archive keys whatever they are.
	DebianMirror, SecurityMirror string
	// HTTPClient downloads from the mirrors; nil is http.DefaultClient, which honours HTTPS_PROXY.
	HTTPClient *http.Client
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

func (o Options) withDefaults() (Options, error) {
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.CacheDir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return o, err
		}
		o.CacheDir = filepath.Join(cache, "acrpull", "image")
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	o.DebianMirror = cmp.Or(o.DebianMirror, os.Getenv("ACRPULL_DEBIAN_MIRROR"), DefaultDebianMirror)
	o.SecurityMirror = cmp.Or(o.SecurityMirror, os.Getenv("ACRPULL_DEBIAN_SECURITY_MIRROR"), DefaultSecurityMirror)
	o.DebianMirror, o.SecurityMirror = strings.TrimSuffix(o.DebianMirror, "/"), strings.TrimSuffix(o.SecurityMirror, "/")
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	return o, nil
}

// archive is the Debian archive o names.
func (o Options) archive() (*archive, error) {
	keyring, err := debianKeyring()
	if err != nil {
		return nil, err
	}
	return &archive{client: o.HTTPClient, keyring: keyring, cacheDir: filepath.Join(o.CacheDir, "debian"), now: time.Now, log: o.Log}, nil
}

// suites are the suites the userland comes from, as a sources list of a Debian release with its updates names them.
func (o Options) suites() []suite {
	return []suite{{o.DebianMirror, release}, {o.DebianMirror, release + "-updates"}, {o.SecurityMirror, release + "-security"}}
}

// epoch is every file's modification time, so equal inputs make equal layers.
var epoch = time.Unix(0, 0)

// Build returns the image: a layer of Debian userland and a layer of acrpull's binaries, OCI media types, for
// o.Arch. An image built before from the same binaries and packages is taken from the cache instead of built again,
// so the tests that each need the image (and run at once) build it once.
func Build(ctx context.Context, o Options) (v1.Image, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	// A test that builds the image passes from go test's cache only while what the binaries are built from is
	// unchanged. (The Debian packages are not recorded: go test cannot see the mirror.)
	var programs []string
	for _, name := range Binaries {
		programs = append(programs, "./cmd/"+name)
	}
	if err := buildinputs.Record(o.ModuleRoot, programs...); err != nil {
		return nil, err
	}
	dpkgArch, err := debianArch(o.Arch)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "acrpull-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	// Builds of one architecture and kind running at once (the tests of several packages) take turns: the first
	// compiles and fills the Go build cache, downloads and caches the image, and the others find the image cached.
	// A build for another architecture, or a release build, compiles other packages and goes on beside them.
	unlock, err := lockFile(filepath.Join(o.CacheDir, fmt.Sprintf("build-%s-trimpath=%t.lock", o.Arch, o.Trimpath)))
	if err != nil {
		return nil, err
	}
	defer unlock()

	ldflags := "-s -w"
	if o.Version != "" {
		// --version, the start log line and acrpull_build_info then name the image's version.
		ldflags += " -X github.com/acrpull/acrpull/internal/buildinfo.version=" + o.Version
	}
	buildFlags := []string{"-ldflags=" + ldflags}
	if o.Trimpath {
		buildFlags = append(buildFlags, "-trimpath")
	}
	goEnv := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+o.Arch)

	// The image is named by what goes into it: the compiled packages of the binaries (which the Go build cache
	// names by their content), how they are linked, and the Debian packages. Finding it cached then costs no link.
	key := sha256.New()
	fmt.Fprintf(key, "%s\n%s\n%s\n%q\n", imageFormat, o.Arch, o.Version, buildFlags)
	if err := binariesInputs(ctx, o, buildFlags, goEnv, key); err != nil {
		return nil, err
	}
	a, err := o.archive()
	if err != nil {
		return nil, err
	}
	pkgs, err := a.resolve(ctx, o.suites(), dpkgArch, Packages)
	if err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		fmt.Fprintf(key, "%s %s\n", p.Name, p.SHA256)
	}
	images := filepath.Join(o.CacheDir, "images")
	cached := filepath.Join(images, hex.EncodeToString(key.Sum(nil)))
	if img, err := readCached(cached); err == nil {
		fmt.Fprintf(o.Log, "the image of these sources and packages is in %s\n", cached)
		return img, nil
	}

	bin := filepath.Join(work, "bin")
	for _, name := range Binaries {
		fmt.Fprintf(o.Log, "building %s for linux/%s\n", name, o.Arch)
		args := append([]string{"build", "-o", filepath.Join(bin, name)}, buildFlags...)
		build := exec.CommandContext(ctx, "go", append(args, "./cmd/"+name)...)
		build.Dir, build.Env = o.ModuleRoot, goEnv
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, out)
		}
	}

	rootfs := filepath.Join(work, "rootfs")
	if err := debianUserland(ctx, a, pkgs, rootfs); err != nil {
		return nil, err
	}
	userland, err := dirLayer(rootfs)
	if err != nil {
		return nil, fmt.Errorf("packing the Debian userland: %w", err)
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
	cfg.OS, cfg.Architecture, cfg.Created = "linux", o.Arch, v1.Time{Time: epoch}
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
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, err
	}
	if err := writeCached(images, cached, img); err != nil {
		return nil, fmt.Errorf("caching the image: %w", err)
	}
	return img, nil
}

// imageFormat names the cache's layout of keys; the recipe itself is keyed by this package's source.
const imageFormat = "acrpull-image/2"

// keptImages is how many built images the cache keeps (the newest): a few commits' worth.
const keptImages = 3

// readCached reads the image of an OCI layout written by writeCached.
func readCached(dir string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, err
	}
	index, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	manifest, err := index.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(manifest.Manifests) != 1 {
		return nil, fmt.Errorf("%s holds %d images", dir, len(manifest.Manifests))
	}
	return index.Image(manifest.Manifests[0].Digest)
}

// writeCached writes img as an OCI layout at dir (complete or not at all), and removes all but the newest
// keptImages from images.
func writeCached(images, dir string, img v1.Image) error {
	if err := os.MkdirAll(images, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(images, ".writing-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	entries, err := os.ReadDir(images)
	if err != nil {
		return err
	}
	type built struct {
		path string
		at   time.Time
	}
	var all []built
	for _, e := range entries {
		if info, err := e.Info(); err == nil && e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			all = append(all, built{filepath.Join(images, e.Name()), info.ModTime()})
		}
	}
	slices.SortFunc(all, func(a, b built) int { return b.at.Compare(a.at) })
	for _, old := range all[min(len(all), keptImages):] {
		if err := os.RemoveAll(old.path); err != nil {
			return err
		}
	}
	return nil
}

// binariesInputs writes to key what the image is built from besides the Debian packages: the compiled archive of
// every package the binaries link (`go list -export` compiles them, or finds them in the Go build cache, whose file
// names are hashes of their content), the commit the go command stamps into them, and the code that assembles it.
func binariesInputs(ctx context.Context, o Options, buildFlags, goEnv []string, key io.Writer) error {
	args := append([]string{"list", "-deps", "-export", "-f", "{{.ImportPath}} {{.Export}}"}, buildFlags...)
	for _, name := range Binaries {
		args = append(args, "./cmd/"+name)
	}
	list := exec.CommandContext(ctx, "go", args...)
	list.Dir, list.Env = o.ModuleRoot, goEnv
	var stderr bytes.Buffer
	list.Stdout, list.Stderr = key, &stderr
	if err := list.Run(); err != nil {
		return fmt.Errorf("go list ./cmd/...: %w\n%s", err, stderr.Bytes())
	}
	// The VCS stamp (the revision, and whether the tree is modified) is part of each binary too; outside a git
	// checkout there is none.
	head, _ := exec.CommandContext(ctx, "git", "-C", o.ModuleRoot, "rev-parse", "HEAD").Output()
	status, _ := exec.CommandContext(ctx, "git", "-C", o.ModuleRoot, "status", "--porcelain").Output()
	fmt.Fprintf(key, "vcs %s modified=%t\n", bytes.TrimSpace(head), len(status) > 0)
	// And how the image is assembled: this package's code, so that an edit to it is never answered from the cache.
	recipe, err := filepath.Glob(filepath.Join(o.ModuleRoot, "internal/harness/image/*.go"))
	if err != nil {
		return err
	}
	for _, file := range recipe {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		fmt.Fprintf(key, "%s %x\n", filepath.Base(file), sha256.Sum256(data))
	}
	return nil
}

// debianUserland downloads and unpacks pkgs into rootfs and finishes what their maintainer scripts would have done:
// the iptables alternatives (nf_tables, the default of current distributions; the node agent picks the node's
// backend itself), the CA bundle and the users. The loader needs no cache (ldconfig's): Debian's loader searches
// the multiarch library directories, where the packages put their libraries and the names they are loaded by.
func debianUserland(ctx context.Context, a *archive, pkgs []debPackage, rootfs string) error {
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, p := range pkgs {
		file, err := a.download(ctx, p)
		if err != nil {
			return err
		}
		if err := unpackDeb(file, root); err != nil {
			return fmt.Errorf("unpacking %s %s: %w", p.Name, p.Version, err)
		}
	}
	for _, dir := range []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale"} {
		if err := os.RemoveAll(filepath.Join(rootfs, dir)); err != nil {
			return err
		}
	}
	for _, tool := range []string{"iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"} {
		if err := root.Symlink("xtables-nft-multi", filepath.Join("usr/sbin", tool)); err != nil {
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
		if err := root.WriteFile(name, []byte(content), 0o644); err != nil {
			return err
		}
	}
	// proc, sys and dev are where a container runtime mounts its filesystems.
	for _, dir := range []string{"tmp", "run", "root", "home/nonroot", "proc", "sys", "dev"} {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	return root.Chmod("tmp", 0o1777|fs.ModeSticky)
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
