package p11kit

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type dirs struct {
	o   Options
	pkg string
	sys string
	usr string
}

func newDirs(t *testing.T) dirs {
	t.Helper()
	base := t.TempDir()
	home := filepath.Join(base, "home")
	d := dirs{
		pkg: filepath.Join(base, "share"),
		sys: filepath.Join(base, "etc"),
		usr: filepath.Join(home, ".config", "pkcs11", "modules"),
	}
	for _, p := range []string{d.pkg, d.sys, d.usr} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	d.o = Options{
		PackageDir:   d.pkg,
		SystemDir:    d.sys,
		SystemConfig: filepath.Join(base, "etc-pkcs11.conf"),
		Home:         home,
		ModuleDir:    "/usr/lib/test-multiarch/pkcs11",
	}
	return d
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func names(ms []Module) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func find(t *testing.T, res Result, name string) Module {
	t.Helper()
	for _, m := range res.Modules {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("module %s not found in %v", name, names(res.Modules))
	return Module{}
}

func TestLoad(t *testing.T) {
	d := newDirs(t)
	write(t, d.pkg, "opensc.module", "# OpenSC\nmodule: opensc-pkcs11.so\n")
	write(t, d.pkg, "abs.module", "  module :   /opt/vendor/lib/libvendor.so  \n\npriority: 5\ncritical: yes\n")
	write(t, d.pkg, "sub.module", "module: vendor/libsub.so\n")
	write(t, d.pkg, "home.module", "module: ~/lib/libhome.so\n")
	write(t, d.pkg, "trust.module", "module: p11-kit-trust.so\ntrust-policy: yes\n")
	write(t, d.pkg, "remote.module", "remote: |ssh host p11-kit remote x.so\n")
	write(t, d.pkg, "noop.module", "# no module: line\nenable-in: smimed\n")
	write(t, d.pkg, "only-firefox.module", "module: libff.so\nenable-in: firefox, thunderbird\n")
	write(t, d.pkg, "for-smimed.module", "module: libsm.so\nenable-in: seahorse smimed\n")
	write(t, d.pkg, "not-smimed.module", "module: libnot.so\ndisable-in: gnome-shell,smimed\n")
	write(t, d.pkg, "not-others.module", "module: libother.so\ndisable-in: smimed-helper\n")
	write(t, d.pkg, "both.module", "module: libboth.so\nenable-in: smimed\ndisable-in: smimed\n")
	write(t, d.pkg, "backup.module~", "module: libbackup.so\n")
	write(t, d.pkg, "README", "module: libreadme.so\n")
	write(t, d.pkg, ".hidden.module", "module: libhidden.so\n")
	if err := os.Mkdir(filepath.Join(d.pkg, "dir.module"), 0o700); err != nil {
		t.Fatal(err)
	}

	res, err := Load(d.o)
	if err != nil {
		t.Fatal(err)
	}
	got := names(res.Modules)
	want := []string{"abs", "both", "for-smimed", "home", "not-others", "opensc", "sub"}
	if !slices.Equal(got, want) {
		t.Fatalf("modules %v, want %v (priority first, then name)", got, want)
	}
	for name, path := range map[string]string{
		"opensc": "/usr/lib/test-multiarch/pkcs11/opensc-pkcs11.so",
		"abs":    "/opt/vendor/lib/libvendor.so",
		"sub":    "/usr/lib/test-multiarch/pkcs11/vendor/libsub.so",
		"home":   filepath.Join(d.o.Home, "lib/libhome.so"),
	} {
		if m := find(t, res, name); m.Path != path {
			t.Errorf("%s: path %s, want %s", name, m.Path, path)
		}
	}
	abs := find(t, res, "abs")
	if abs.Priority != 5 || !abs.Critical || abs.Files[0] != filepath.Join(d.pkg, "abs.module") {
		t.Errorf("abs: %+v", abs)
	}
	skipped := map[string]string{}
	for _, s := range res.Skipped {
		skipped[s.Name] = s.Reason
	}
	for name, reason := range map[string]string{
		"trust": "trust-policy", "remote": "remote", "noop": "no \"module:\"",
		"only-firefox": "disabled for smimed", "not-smimed": "disabled for smimed",
	} {
		if !strings.Contains(skipped[name], reason) {
			t.Errorf("%s skipped for %q, want %q", name, skipped[name], reason)
		}
	}
}

// TestPrecedence: the user directory, then the system one, then the
// package one; a user file overrides field by field.
func TestPrecedence(t *testing.T) {
	d := newDirs(t)
	write(t, d.pkg, "card.module", "module: libcard.so\npriority: 1\nx-vendor: pkg\n")
	write(t, d.sys, "card.module", "module: /opt/card/libcard.so\nx-vendor: sys\n")
	write(t, d.usr, "card.module", "disable-in: nobody\nx-vendor: user\n")
	write(t, d.usr, "mine.module", "module: /home/me/libmine.so\n")
	res, err := Load(d.o)
	if err != nil {
		t.Fatal(err)
	}
	card := find(t, res, "card")
	if card.Path != "/opt/card/libcard.so" || card.Priority != 1 || card.Fields["x-vendor"] != "user" || len(card.Files) != 3 {
		t.Errorf("card: %+v", card)
	}
	find(t, res, "mine")

	// user-config: none in the system pkcs11.conf turns the user directory off.
	write(t, filepath.Dir(d.o.SystemConfig), filepath.Base(d.o.SystemConfig), "user-config: none\n")
	res, err = Load(d.o)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(res.Modules); !slices.Equal(got, []string{"card"}) || find(t, res, "card").Fields["x-vendor"] != "sys" {
		t.Errorf("user-config none: %v", got)
	}

	// user-config: only (the user's own pkcs11.conf may say so when the
	// system allows merging) ignores the system and package directories.
	write(t, filepath.Dir(d.o.SystemConfig), filepath.Base(d.o.SystemConfig), "user-config: merge\n")
	write(t, filepath.Join(d.o.Home, ".config", "pkcs11"), "pkcs11.conf", "user-config: only\n")
	res, err = Load(d.o)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(res.Modules); !slices.Equal(got, []string{"mine"}) {
		t.Errorf("user-config only: %v (card has no module: of its own there)", got)
	}

	// NoUser ignores all of it.
	o := d.o
	o.NoUser = true
	res, err = Load(o)
	if err != nil {
		t.Fatal(err)
	}
	if got := names(res.Modules); !slices.Equal(got, []string{"card"}) {
		t.Errorf("NoUser: %v", got)
	}
}

// TestBadFiles: a broken file is reported; the others still load.
func TestBadFiles(t *testing.T) {
	d := newDirs(t)
	write(t, d.pkg, "good.module", "module: libgood.so\n")
	bad := write(t, d.pkg, "bad.module", "module: libbad.so\nthis line has no colon\n")
	write(t, d.pkg, "section.module", "[section]\nmodule: libsection.so\n")
	res, err := Load(d.o)
	if got := names(res.Modules); !slices.Equal(got, []string{"good"}) {
		t.Fatalf("modules %v", got)
	}
	if err == nil || !strings.Contains(err.Error(), bad+":2") || !strings.Contains(err.Error(), "section.module:1") {
		t.Fatalf("error %v", err)
	}
	write(t, filepath.Dir(d.o.SystemConfig), filepath.Base(d.o.SystemConfig), "user-config: sometimes\n")
	if _, err := Load(d.o); err == nil || !strings.Contains(err.Error(), "sometimes") {
		t.Fatalf("invalid user-config: %v", err)
	}
	// Missing directories are not errors.
	if _, err := Load(Options{PackageDir: "/nonexistent/a", SystemDir: "/nonexistent/b", NoUser: true}); err != nil {
		t.Fatal(err)
	}
}

// TestSystemConfiguration reads this machine's real p11-kit files (Debian
// ships opensc-pkcs11.module with a relative path and p11-kit-trust as a
// trust-policy module).
func TestSystemConfiguration(t *testing.T) {
	if _, err := os.Stat(filepath.Join(DefaultPackageDir, "opensc-pkcs11.module")); err != nil {
		t.Fatalf("OpenSC's p11-kit module file is missing (Debian package opensc-pkcs11): %v", err)
	}
	res, err := Load(Options{NoUser: true})
	if err != nil {
		t.Fatal(err)
	}
	m := find(t, res, "opensc-pkcs11")
	if m.Path != filepath.Join(DefaultModuleDir(), "opensc-pkcs11.so") {
		t.Errorf("opensc path %s", m.Path)
	}
	if _, err := os.Stat(m.Path); err != nil {
		t.Errorf("resolved OpenSC module: %v", err)
	}
	for _, s := range res.Skipped {
		if s.Name == "p11-kit-trust" && strings.Contains(s.Reason, "trust-policy") {
			return
		}
	}
	if _, err := os.Stat(filepath.Join(DefaultPackageDir, "p11-kit-trust.module")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("p11-kit-trust not skipped: %+v", res.Skipped)
	}
}

func TestResolve(t *testing.T) {
	for in, want := range map[string]string{
		"opensc-pkcs11.so":       "/mods/opensc-pkcs11.so",
		"./x/../y.so":            "/mods/y.so",
		"/abs/lib.so":            "/abs/lib.so",
		"/abs/../lib/./z.so":     "/lib/z.so",
		"$HOMEBREW/lib.so":       "/mods/$HOMEBREW/lib.so",
		"~user/lib.so":           "/mods/~user/lib.so",
		"relative/dir/module.so": "/mods/relative/dir/module.so",
	} {
		if got := Resolve(in, "/mods"); got != want {
			t.Errorf("Resolve(%q) = %q, want %q", in, got, want)
		}
	}
	home, _ := os.UserHomeDir()
	if got := Resolve("~/lib.so", "/mods"); got != filepath.Join(home, "lib.so") {
		t.Errorf("~/lib.so: %s", got)
	}
	if got := Resolve("$HOME/lib.so", "/mods"); got != filepath.Join(home, "lib.so") {
		t.Errorf("$HOME/lib.so: %s", got)
	}
}

func TestValidName(t *testing.T) {
	for name, ok := range map[string]bool{
		"opensc-pkcs11.module": true, "a_b.c-d.module": true, "9.module": true,
		".hidden.module": false, "-x.module": false, "sp ace.module": false, "": false, "é.module": false,
	} {
		if validName(name) != ok {
			t.Errorf("validName(%q) = %v", name, !ok)
		}
	}
}
