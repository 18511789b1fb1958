// Package p11kit finds the PKCS#11 modules the desktop has configured, the
// way p11-kit reads its module configuration (pkcs11.conf(5)), so that
// smimed offers the same smart cards as the browser and the mail client.
//
// Module files are read from the user directory (~/.config/pkcs11/modules),
// then the system directory (/etc/pkcs11/modules), then the package
// directory (/usr/share/p11-kit/modules). A file is "name: value" lines
// with '#' comments; its name without the ".module" suffix names the
// module. A module named in several directories is one module whose fields
// come from the first file that sets them (a user file overrides the
// system's field by field, as p11-kit does). "user-config" in
// pkcs11.conf (none, merge, only, override) says whether the user
// directory is read, and whether the others still are.
//
// A relative "module:" path is taken relative to p11-kit's module
// directory (/usr/lib/<multiarch>/pkcs11 on Debian). Modules with
// "enable-in" are used only when the program name is listed there;
// modules with "disable-in" are skipped when it is. Trust-policy modules
// (trust-policy: yes, p11-kit-trust) and remote modules ("remote:") are
// skipped: smimed wants keys, not trust anchors, and talks to modules
// only through its own worker processes.
//
// This package reads files only; it never loads a module.
package p11kit

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
)

// Default locations, as Debian's p11-kit 0.24 is built.
const (
	DefaultPackageDir   = "/usr/share/p11-kit/modules"
	DefaultSystemDir    = "/etc/pkcs11/modules"
	DefaultSystemConfig = "/etc/pkcs11/pkcs11.conf"
	// DefaultUserDir and DefaultUserConfig start with "~/", which is
	// $HOME (p11-kit does not follow XDG_CONFIG_HOME here).
	DefaultUserDir    = "~/.config/pkcs11/modules"
	DefaultUserConfig = "~/.config/pkcs11/pkcs11.conf"
	// ProgramName is the name smimed matches against enable-in and
	// disable-in.
	ProgramName = "smimed"
)

// Options say where to look. The zero value reads the real configuration
// for program "smimed".
type Options struct {
	// PackageDir, SystemDir and UserDir hold *.module files; empty means
	// the default. Tests point them at temporary directories.
	PackageDir, SystemDir, UserDir string
	// SystemConfig and UserConfig are the pkcs11.conf files that may set
	// user-config; empty means the default.
	SystemConfig, UserConfig string
	// NoUser skips the user directory and config, whatever
	// pkcs11.conf says.
	NoUser bool
	// ModuleDir resolves relative "module:" paths; empty means the first
	// that exists of /usr/lib/<multiarch>/pkcs11, /usr/lib64/pkcs11 and
	// /usr/lib/pkcs11 (DefaultModuleDir).
	ModuleDir string
	// Program is matched against enable-in and disable-in; empty means
	// ProgramName.
	Program string
	// Home replaces $HOME in "~/" paths; empty means os.UserHomeDir.
	Home string
}

// Module is a module to load.
type Module struct {
	// Name is the config file's name without ".module".
	Name string
	// Path is the module's absolute path. It may not exist; loading it is
	// the caller's business.
	Path string
	// Files are the config files that made up the module, first wins.
	Files []string
	// Priority is the "priority" field (0 when absent); higher first.
	Priority int
	// Critical is the "critical" field: p11-kit fails when such a module
	// fails. smimed reports it like any other module.
	Critical bool
	// Fields are all the fields read, after merging.
	Fields map[string]string
}

// Skipped is a module the configuration names that is not used, and why.
type Skipped struct {
	Name   string   // the config name
	Files  []string // the files that named it
	Reason string   // why it is not used
}

// Result is what Load found.
type Result struct {
	// Modules are the modules to use, by priority (highest first) then
	// name.
	Modules []Module
	// Skipped are configured modules left out (disabled for this program,
	// trust policy, remote, no "module:" field).
	Skipped []Skipped
}

// Load reads the module configuration. Files that cannot be read or
// parsed are reported in the returned error (errors.Join of one error per
// file); every other module is still returned.
func Load(o Options) (Result, error) {
	o = o.withDefaults()
	var errs []error
	mode := "merge"
	if !o.NoUser {
		m, err := userMode(o)
		if err != nil {
			errs = append(errs, err)
		}
		mode = m
	}
	type entry struct {
		fields map[string]string
		files  []string
	}
	configs := map[string]*entry{}
	var order []string
	load := func(dir string) {
		ents, err := os.ReadDir(dir)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
				errs = append(errs, fmt.Errorf("p11kit: %w", err))
			}
			return
		}
		for _, de := range ents {
			if de.IsDir() {
				continue
			}
			name, ok := strings.CutSuffix(de.Name(), ".module")
			if !ok || !validName(de.Name()) {
				// p11-kit still loads such files, with a warning that it will
				// stop; editor backups (foo.module~) are the usual case.
				// smimed skips them.
				continue
			}
			path := filepath.Join(dir, de.Name())
			fields, err := parseFile(path)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			e, seen := configs[name]
			if !seen {
				e = &entry{fields: map[string]string{}}
				configs[name] = e
				order = append(order, name)
			}
			e.files = append(e.files, path)
			for k, v := range fields {
				if _, set := e.fields[k]; !set {
					e.fields[k] = v
				}
			}
		}
	}
	if !o.NoUser && mode != "none" {
		load(expandHome(o.UserDir, o.Home))
	}
	if o.NoUser || mode != "only" {
		load(o.SystemDir)
		load(o.PackageDir)
	}

	var res Result
	for _, name := range order {
		e := configs[name]
		skip := func(reason string) {
			res.Skipped = append(res.Skipped, Skipped{Name: name, Files: e.files, Reason: reason})
		}
		f := e.fields
		switch {
		case f["remote"] != "":
			skip("remote module (smimed loads modules only in its own worker processes)")
			continue
		case f["module"] == "":
			skip(`no "module:" field`)
			continue
		case parseBool(f["trust-policy"]):
			skip("trust-policy module (trust anchors, not keys)")
			continue
		}
		if !enabled(f, o.Program) {
			skip("disabled for " + o.Program + " (enable-in/disable-in)")
			continue
		}
		m := Module{Name: name, Path: resolve(f["module"], o.ModuleDir, o.Home), Files: e.files, Fields: f,
			Critical: parseBool(f["critical"])}
		if p, err := strconv.Atoi(f["priority"]); err == nil {
			m.Priority = p
		}
		res.Modules = append(res.Modules, m)
	}
	slices.SortStableFunc(res.Modules, func(a, b Module) int {
		if a.Priority != b.Priority {
			return b.Priority - a.Priority
		}
		return strings.Compare(a.Name, b.Name)
	})
	return res, errors.Join(errs...)
}

func (o Options) withDefaults() Options {
	if o.PackageDir == "" {
		o.PackageDir = DefaultPackageDir
	}
	if o.SystemDir == "" {
		o.SystemDir = DefaultSystemDir
	}
	if o.UserDir == "" {
		o.UserDir = DefaultUserDir
	}
	if o.SystemConfig == "" {
		o.SystemConfig = DefaultSystemConfig
	}
	if o.UserConfig == "" {
		o.UserConfig = DefaultUserConfig
	}
	if o.ModuleDir == "" {
		o.ModuleDir = DefaultModuleDir()
	}
	if o.Program == "" {
		o.Program = ProgramName
	}
	if o.Home == "" {
		o.Home, _ = os.UserHomeDir()
	}
	return o
}

// userMode reads user-config from the system pkcs11.conf, then the user's
// (which may override it unless the system said none).
func userMode(o Options) (string, error) {
	mode := "merge"
	sys, err := parseFile(o.SystemConfig)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "none", err
	}
	if m, ok := sys["user-config"]; ok {
		mode = m
	}
	if mode == "none" {
		return mode, nil
	}
	usr, err := parseFile(expandHome(o.UserConfig, o.Home))
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
		return mode, err
	}
	if m, ok := usr["user-config"]; ok {
		mode = m
	}
	switch mode {
	case "none", "merge", "only":
	case "override":
		mode = "only"
	default:
		return "none", fmt.Errorf("p11kit: invalid user-config %q", mode)
	}
	return mode, nil
}

// validName is p11-kit's rule for config file names: an alphanumeric
// first, then alphanumerics, '_', '-' and '.'.
func validName(s string) bool {
	for i, c := range s {
		alnum := c < 0x80 && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9')
		if !alnum && (i == 0 || c != '_' && c != '-' && c != '.') {
			return false
		}
	}
	return s != ""
}

// parseFile reads "name: value" lines. Blank lines and lines starting with
// '#' are skipped; white space around names and values is trimmed; a
// later field of the same name replaces an earlier one. A line without a
// colon, a section header or a PEM block make the file invalid.
func parseFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "["), strings.HasPrefix(line, "-----BEGIN "):
			return nil, fmt.Errorf("p11kit: %s:%d: unexpected section or PEM block", path, n)
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("p11kit: %s:%d: invalid field line: no colon", path, n)
		}
		fields[strings.TrimSpace(name)] = strings.TrimSpace(value)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("p11kit: %s: %w", path, err)
	}
	return fields, nil
}

func parseBool(s string) bool { return s == "yes" }

// enabled applies enable-in / disable-in for program. As in p11-kit, when
// both are set only enable-in counts.
func enabled(f map[string]string, program string) bool {
	if in, ok := f["enable-in"]; ok {
		return inList(in, program)
	}
	if out, ok := f["disable-in"]; ok {
		return !inList(out, program)
	}
	return true
}

// inList reports whether name is one of the comma- or space-separated
// words of list.
func inList(list, name string) bool {
	return slices.Contains(strings.FieldsFunc(list, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\v' || r == '\f'
	}), name)
}

// Resolve returns path made absolute like p11-kit does for "module:": a
// relative path (or bare file name) is taken relative to moduleDir
// (DefaultModuleDir when empty); "~/" and "$HOME/" mean the home directory.
func Resolve(path, moduleDir string) string { return resolve(path, moduleDir, "") }

func resolve(path, moduleDir, home string) string {
	path = expandHome(path, home)
	if filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	if moduleDir == "" {
		moduleDir = DefaultModuleDir()
	}
	return filepath.Join(moduleDir, path)
}

func expandHome(path, home string) string {
	rest, ok := strings.CutPrefix(path, "~")
	if !ok {
		rest, ok = strings.CutPrefix(path, "$HOME")
	}
	if !ok || (rest != "" && rest[0] != '/') {
		return path
	}
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return home + rest
}

// multiarch returns Debian's multiarch tuple for GOARCH.
func multiarch(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64-linux-gnu"
	case "arm64":
		return "aarch64-linux-gnu"
	case "386":
		return "i386-linux-gnu"
	case "arm":
		return "arm-linux-gnueabihf"
	case "ppc64le":
		return "powerpc64le-linux-gnu"
	case "s390x":
		return "s390x-linux-gnu"
	case "riscv64":
		return "riscv64-linux-gnu"
	case "loong64":
		return "loongarch64-linux-gnu"
	}
	return goarch + "-linux-gnu"
}

// DefaultModuleDir is where p11-kit looks for modules named by a relative
// path: Debian's /usr/lib/<multiarch>/pkcs11, else /usr/lib64/pkcs11
// (Fedora), else /usr/lib/pkcs11; the Debian path when none exists.
func DefaultModuleDir() string {
	debian := filepath.Join("/usr/lib", multiarch(runtime.GOARCH), "pkcs11")
	for _, d := range []string{debian, "/usr/lib64/pkcs11", "/usr/lib/pkcs11"} {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return d
		}
	}
	return debian
}
