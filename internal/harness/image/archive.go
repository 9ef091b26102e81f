/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package image

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ulikunitz/xz"
	"pault.ag/go/debian/control"
	"pault.ag/go/debian/version"
)

// Debian's public archive, which the image's userland comes from unless Options name another mirror.
const (
	DefaultDebianMirror   = "https://deb.debian.org/debian"
	DefaultSecurityMirror = "https://deb.debian.org/debian-security"
)

// The release the userland comes from. Its point-release, updates and security suites are read as apt would read a
// sources list naming all three, and each package is taken at the highest version any of them offers.
const release = "bookworm"

// archiveKeys are Debian's archive signing keys (exported from Debian's debian-archive-keyring package): the
// automatic, security and stable-release keys of bookworm and of trixie, which also signs bookworm's suites.
// Fingerprints: B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8, 05AB90340C0C5E797F44A8C8254CF3B5AEC0A8F0,
// 4D64FEC119C2029067D6E791F8D2585B8783D481, 04B54C3CDCA79751B16BC6B5225629DF75B188BD,
// 5E04A1E3223A19A20706E20F9904613D4CCE68C6, 41587F7DB8C774BCCF131416762F67A0B2C39DE4.
//
//go:embed keys/*.asc
var archiveKeys embed.FS

// debianKeyring reads archiveKeys.
func debianKeyring() (openpgp.EntityList, error) {
	files, err := archiveKeys.ReadDir("keys")
	if err != nil {
		return nil, err
	}
	var keyring openpgp.EntityList
	for _, f := range files {
		data, err := archiveKeys.ReadFile("keys/" + f.Name())
		if err != nil {
			return nil, err
		}
		keys, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading Debian's archive key %s: %w", f.Name(), err)
		}
		keyring = append(keyring, keys...)
	}
	return keyring, nil
}

// debianArch is Debian's name of a Go architecture.
func debianArch(goarch string) (string, error) {
	switch goarch {
	case "amd64", "arm64", "s390x":
		return goarch, nil
	case "ppc64le":
		return "ppc64el", nil
	case "386":
		return "i386", nil
	}
	return "", fmt.Errorf("no Debian architecture for GOARCH %q (amd64, arm64, ppc64le, s390x and 386 have one)", goarch)
}

// suite is one distribution of a mirror, as a sources list names it.
type suite struct {
	mirror, name string
}

func (s suite) String() string { return s.mirror + " " + s.name }

// archive reads Debian's package indexes and packages over HTTP(S), trusting nothing it downloads until it is tied to
// a signature by one of keyring's keys: InRelease is signed, it names the SHA256 of each Packages index, and those
// name the SHA256 of each package. Verified files are kept in cacheDir by their SHA256, so a file is downloaded once.
type archive struct {
	client   *http.Client
	keyring  openpgp.EntityList
	cacheDir string
	now      func() time.Time
	log      io.Writer
}

// debPackage is one package file as an index describes it.
type debPackage struct {
	Name, Version, Filename, SHA256 string
	Size                            int64
	suite                           suite
}

// resolve returns, for each name, the newest version that the suites offer for arch.
func (a *archive) resolve(ctx context.Context, suites []suite, arch string, names []string) ([]debPackage, error) {
	newest := map[string]debPackage{}
	for _, s := range suites {
		pkgs, err := a.packages(ctx, s, arch, names)
		if err != nil {
			return nil, err
		}
		for _, p := range pkgs {
			if cur, ok := newest[p.Name]; !ok || newerVersion(p.Version, cur.Version) {
				newest[p.Name] = p
			}
		}
	}
	var out []debPackage
	for _, name := range names {
		p, ok := newest[name]
		if !ok {
			return nil, fmt.Errorf("no suite of %s offers package %s for %s", release, name, arch)
		}
		out = append(out, p)
	}
	return out, nil
}

// newerVersion tells whether Debian version a sorts after b, by dpkg's rules (epochs, ~ before anything, ...). A
// version that does not parse is never newer.
func newerVersion(a, b string) bool {
	va, err := version.Parse(a)
	if err != nil {
		return false
	}
	vb, err := version.Parse(b)
	if err != nil {
		return true
	}
	return version.Compare(va, vb) > 0
}

// releaseFile is what a verified InRelease says.
type releaseFile struct {
	byHash bool
	sha256 map[string]indexEntry // by path under dists/<suite>/
}

type indexEntry struct {
	sha256 string
	size   int64
}

// inRelease downloads a suite's InRelease and returns its contents once its signature checks out against the
// keyring, it names the suite asked for and it has not expired.
func (a *archive) inRelease(ctx context.Context, s suite) (*releaseFile, error) {
	data, err := a.get(ctx, s.mirror+"/dists/"+s.name+"/InRelease")
	if err != nil {
		return nil, err
	}
	return a.verifyRelease(s, data)
}

func (a *archive) verifyRelease(s suite, data []byte) (*releaseFile, error) {
	block, _ := clearsign.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("InRelease of %s is not a signed document: refusing it", s)
	}
	cfg := &packet.Config{Time: a.now}
	if _, err := block.VerifySignature(a.keyring, cfg); err != nil {
		return nil, fmt.Errorf("InRelease of %s has no valid signature by Debian's archive keys (%w): refusing it", s, err)
	}
	paragraphs, err := control.NewParagraphReader(bytes.NewReader(block.Plaintext), nil)
	if err != nil {
		return nil, err
	}
	p, err := paragraphs.Next()
	if err != nil {
		return nil, fmt.Errorf("reading InRelease of %s: %w", s, err)
	}
	// A signed InRelease of another suite, or an old one replayed, is refused as apt refuses it.
	if codename := p.Values["Codename"]; codename != s.name {
		return nil, fmt.Errorf("InRelease of %s is for %q: refusing it", s, codename)
	}
	if until := p.Values["Valid-Until"]; until != "" {
		t, err := time.Parse(time.RFC1123, until)
		if err != nil {
			return nil, fmt.Errorf("InRelease of %s: Valid-Until %q: %w", s, until, err)
		}
		if a.now().After(t) {
			return nil, fmt.Errorf("InRelease of %s expired at %s: refusing it (a stale mirror?)", s, until)
		}
	}
	rf := &releaseFile{byHash: p.Values["Acquire-By-Hash"] == "yes", sha256: map[string]indexEntry{}}
	for _, line := range strings.Split(p.Values["SHA256"], "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		size, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("InRelease of %s: size of %s: %w", s, f[2], err)
		}
		rf.sha256[f[2]] = indexEntry{sha256: f[0], size: size}
	}
	return rf, nil
}

// packages returns the entries of names in a suite's main Packages index for arch (Debian lists its
// architecture-independent packages there too).
func (a *archive) packages(ctx context.Context, s suite, arch string, names []string) ([]debPackage, error) {
	rf, err := a.inRelease(ctx, s)
	if err != nil {
		return nil, err
	}
	dir := "main/binary-" + arch + "/"
	var name string
	var entry indexEntry
	for _, candidate := range []string{"Packages.xz", "Packages.gz", "Packages"} {
		if e, ok := rf.sha256[dir+candidate]; ok {
			name, entry = dir+candidate, e
			break
		}
	}
	if name == "" {
		return nil, fmt.Errorf("InRelease of %s lists no Packages index for %s", s, arch)
	}
	url := s.mirror + "/dists/" + s.name + "/" + name
	if rf.byHash {
		// The index by its hash cannot change between reading InRelease and it, as the plain name can while the
		// mirror updates.
		url = s.mirror + "/dists/" + s.name + "/" + path.Dir(name) + "/by-hash/SHA256/" + entry.sha256
	}
	file, err := a.fetch(ctx, url, s.name+"/"+name, entry)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = bufio.NewReaderSize(f, 1<<20)
	switch path.Ext(name) {
	case ".xz":
		if r, err = xz.NewReader(r); err != nil {
			return nil, fmt.Errorf("%s of %s: %w", name, s, err)
		}
	case ".gz":
		if r, err = gzip.NewReader(r); err != nil {
			return nil, fmt.Errorf("%s of %s: %w", name, s, err)
		}
	}
	paragraphs, err := control.NewParagraphReader(r, nil)
	if err != nil {
		return nil, err
	}
	var out []debPackage
	for {
		p, err := paragraphs.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s of %s: %w", name, s, err)
		}
		if !slices.Contains(names, p.Values["Package"]) {
			continue
		}
		size, err := strconv.ParseInt(p.Values["Size"], 10, 64)
		if err != nil || p.Values["SHA256"] == "" || p.Values["Filename"] == "" {
			return nil, fmt.Errorf("%s of %s: entry of %s %s lacks Filename, Size or SHA256", name, s, p.Values["Package"], p.Values["Version"])
		}
		out = append(out, debPackage{Name: p.Values["Package"], Version: p.Values["Version"], Filename: p.Values["Filename"],
			SHA256: p.Values["SHA256"], Size: size, suite: s})
	}
}

// download fetches a package, returning the path of its verified file in the cache.
func (a *archive) download(ctx context.Context, p debPackage) (string, error) {
	return a.fetch(ctx, p.suite.mirror+"/"+p.Filename, path.Base(p.Filename), indexEntry{sha256: p.SHA256, size: p.Size})
}

// fetch returns the cached file of want's SHA256, downloading it from url first if it is missing. The download is
// kept only if its size and SHA256 are the ones wanted; what says is the name in the error.
func (a *archive) fetch(ctx context.Context, url, what string, want indexEntry) (string, error) {
	dir := filepath.Join(a.cacheDir, "sha256")
	file := filepath.Join(dir, want.sha256)
	if len(want.sha256) != sha256.Size*2 || strings.ContainsAny(want.sha256, "/\\.") {
		return "", fmt.Errorf("%s: %q is not a SHA256", what, want.sha256)
	}
	if _, err := os.Stat(file); err == nil {
		return file, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(a.log, "downloading %s\n", url)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	tmp, err := os.CreateTemp(dir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	// One byte past the size is enough to tell a longer file.
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(resp.Body, want.size+1))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); n != want.size || got != want.sha256 {
		return "", fmt.Errorf("%s from %s has SHA256 %s and %d bytes, but its index says %s and %d: refusing it (corrupt or tampered)",
			what, url, got, n, want.sha256, want.size)
	}
	if err := os.Rename(tmp.Name(), file); err != nil {
		return "", err
	}
	return file, nil
}

// get downloads a small document (an InRelease).
func (a *archive) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 16<<20))
}
