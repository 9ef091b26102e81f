/*
Copyright 2026 The acrpull Authors.
SPDX-License-Identifier: MIT
*/

package image

import (
	"bytes"
	"context"
	"debug/elf"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

// Versions sort by dpkg's rules, not as strings or semver: epochs first, then upstream version and revision, where
// digits compare as numbers and ~ sorts before everything, even the end.
func TestDebianVersionOrder(t *testing.T) {
	for _, c := range []struct {
		newer, older string
	}{
		{"1.8.9-2+deb12u1", "1.8.9-2"},
		{"1.8.10-1", "1.8.9-2"}, // 10 > 9 as numbers, not as strings
		{"1:1.4.7-1", "2.0-1"},  // the epoch wins
		{"2.36-9+deb12u14", "2.36-9+deb12u9"},
		{"1.0", "1.0~rc1"}, // ~ sorts before the end
		{"1.0~rc2", "1.0~rc1"},
		{"20230311+deb12u1", "20230311"},
		{"1.0-1", "1.0"},
		{"1.0a", "1.0"}, // letters after the end
		{"6.4", "6.3+b1"},
	} {
		if !newerVersion(c.newer, c.older) || newerVersion(c.older, c.newer) {
			t.Errorf("want %s newer than %s", c.newer, c.older)
		}
	}
	if newerVersion("1.0", "1.0") || newerVersion("not a version!", "1.0") {
		t.Error("equal or unparsable versions are not newer")
	}
}

// testMirror is a mirror on loopback that serves Debian's mirrors, changing what tamper says.
type testMirror struct {
	*httptest.Server
	tamper func(path string, body []byte) []byte
}

func newTestMirror(t *testing.T) *testMirror {
	t.Helper()
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	m := &testMirror{tamper: func(_ string, body []byte) []byte { return body }}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstream := o.DebianMirror + strings.TrimPrefix(r.URL.Path, "/debian")
		if rest, ok := strings.CutPrefix(r.URL.Path, "/debian-security"); ok {
			upstream = o.SecurityMirror + rest
		}
		resp, err := http.Get(upstream)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(m.tamper(r.URL.Path, body))
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *testMirror) suites() []suite {
	return []suite{{m.URL + "/debian", release}, {m.URL + "/debian", release + "-updates"}, {m.URL + "/debian-security", release + "-security"}}
}

// testArchive is an archive with Debian's keys and a cache of its own, holding what the user's cache already
// holds (hard links) so that the tests download only what they tamper with.
func testArchive(t *testing.T) *archive {
	t.Helper()
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.archive()
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(a.cacheDir, "sha256")
	a.cacheDir = t.TempDir()
	if err := os.MkdirAll(filepath.Join(a.cacheDir, "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := os.ReadDir(seed)
	for _, f := range files {
		if !strings.HasPrefix(f.Name(), ".") {
			_ = os.Link(filepath.Join(seed, f.Name()), filepath.Join(a.cacheDir, "sha256", f.Name()))
		}
	}
	return a
}

func flipByte(body []byte) []byte {
	out := bytes.Clone(body)
	out[len(out)/2] ^= 0x01
	return out
}

// Only an InRelease signed by one of Debian's archive keys, for the suite asked for and not expired, is read.
func TestInReleaseMustBeSignedByDebian(t *testing.T) {
	a := testArchive(t)
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	s := o.suites()[2]
	real, err := a.get(context.Background(), s.mirror+"/dists/"+s.name+"/InRelease")
	if err != nil {
		t.Fatal(err)
	}
	if rf, err := a.verifyRelease(s, real); err != nil || len(rf.sha256) == 0 {
		t.Fatalf("Debian's own InRelease: %v", err)
	}

	block, _ := clearsign.Decode(real)
	stranger, err := openpgp.NewEntity("not debian", "", "mallory@example.test", nil)
	if err != nil {
		t.Fatal(err)
	}
	var strangerSigned bytes.Buffer
	w, err := clearsign.Encode(&strangerSigned, stranger.PrivateKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(block.Plaintext)
	w.Close()

	for name, c := range map[string]struct {
		data []byte
		now  time.Time
		want string
	}{
		"changed after signing": {bytes.Replace(real, []byte("SHA256:\n "), []byte("SHA256:\n 0"), 1), time.Now(), "no valid signature"},
		"unsigned":              {block.Plaintext, time.Now(), "not a signed document"},
		"signed by another key": {strangerSigned.Bytes(), time.Now(), "no valid signature"},
		"expired (Valid-Until)": {real, time.Now().AddDate(1, 0, 0), "expired"},
	} {
		t.Run(name, func(t *testing.T) {
			a.now = func() time.Time { return c.now }
			defer func() { a.now = time.Now }()
			if _, err := a.verifyRelease(s, c.data); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
	t.Run("another suite's", func(t *testing.T) {
		other := suite{s.mirror, release + "-updates"}
		if _, err := a.verifyRelease(other, real); err == nil || !strings.Contains(err.Error(), `is for "bookworm-security"`) {
			t.Fatalf("got %v", err)
		}
	})
}

// A Packages index or a package that differs from what the signed InRelease names is refused, naming the file.
func TestTamperedDownloadsAreRefused(t *testing.T) {
	ctx := context.Background()
	t.Run("Packages index", func(t *testing.T) {
		m := newTestMirror(t)
		a := testArchive(t)
		// The updates suite's index is small; the cache must not already hold it, or nothing is downloaded.
		rel, err := a.inRelease(ctx, m.suites()[1])
		if err != nil {
			t.Fatal(err)
		}
		entry := rel.sha256["main/binary-amd64/Packages.xz"]
		os.Remove(filepath.Join(a.cacheDir, "sha256", entry.sha256))
		m.tamper = func(path string, body []byte) []byte {
			if strings.Contains(path, "/dists/bookworm-updates/main/binary-amd64/") {
				return flipByte(body)
			}
			return body
		}
		_, err = a.resolve(ctx, m.suites(), "amd64", []string{"netbase"})
		if err == nil || !strings.Contains(err.Error(), "bookworm-updates/main/binary-amd64/Packages.xz") ||
			!strings.Contains(err.Error(), "refusing it") {
			t.Fatalf("got %v", err)
		}
		if _, err := os.Stat(filepath.Join(a.cacheDir, "sha256", entry.sha256)); err == nil {
			t.Fatal("the tampered index was cached")
		}
	})
	t.Run("package", func(t *testing.T) {
		m := newTestMirror(t)
		a := testArchive(t)
		pkgs, err := a.resolve(ctx, m.suites(), "amd64", []string{"netbase"})
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(filepath.Join(a.cacheDir, "sha256", pkgs[0].SHA256))
		m.tamper = func(path string, body []byte) []byte {
			if strings.HasSuffix(path, ".deb") {
				return flipByte(body)
			}
			return body
		}
		_, err = a.download(ctx, pkgs[0])
		if err == nil || !strings.Contains(err.Error(), "netbase_") || !strings.Contains(err.Error(), "refusing it") {
			t.Fatalf("got %v", err)
		}
		m.tamper = func(_ string, body []byte) []byte { return body }
		if _, err := a.download(ctx, pkgs[0]); err != nil {
			t.Fatalf("the untampered package: %v", err)
		}
	})
}

// The same packages give the same layer, byte for byte, and nothing of the build machine is in it: an arm64 userland
// built here holds arm64 programs and arm64's loader.
func TestUserlandIsReproducibleForAnyArchitecture(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads arm64's packages")
	}
	ctx := context.Background()
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	a, err := o.archive()
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := a.resolve(ctx, o.suites(), "arm64", Packages)
	if err != nil {
		t.Fatal(err)
	}
	var digests []string
	var rootfs string
	for range 2 {
		rootfs = t.TempDir()
		if err := debianUserland(ctx, a, pkgs, rootfs); err != nil {
			t.Fatal(err)
		}
		layer, err := dirLayer(rootfs)
		if err != nil {
			t.Fatal(err)
		}
		// The uncompressed content's digest: compressing is deterministic too, but costs more than the test is worth.
		d, err := layer.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
	}
	if digests[0] != digests[1] {
		t.Fatalf("two layers of the same packages: %v", digests)
	}
	for _, program := range []string{"usr/sbin/xtables-nft-multi", "usr/sbin/xtables-legacy-multi", "usr/sbin/conntrack"} {
		f, err := elf.Open(filepath.Join(rootfs, program))
		if err != nil {
			t.Fatal(err)
		}
		if f.Machine != elf.EM_AARCH64 {
			t.Errorf("%s is for %s", program, f.Machine)
		}
		f.Close()
	}
	if _, err := os.Stat(filepath.Join(rootfs, "lib/ld-linux-aarch64.so.1")); err != nil {
		t.Errorf("arm64's loader: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "usr/sbin/iptables")); err != nil || target != "xtables-nft-multi" {
		t.Errorf("iptables -> %q %v, want xtables-nft-multi", target, err)
	}
}
