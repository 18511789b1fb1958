// Package config reads smimed's configuration: the user's TOML file and the
// machine policy, merged over built-in defaults.
//
// The user file is $XDG_CONFIG_HOME/smimed/config.toml, or the file named by
// --config or SMIMED_CONFIG. The machine policy is /etc/smimed/policy.toml.
// Both have the same sections and keys. A key the policy sets is the
// machine's default, which the user file may change, unless the policy locks
// it: `locked = true` in a section locks every key of that section, and a
// top-level `enforce = ["section.key", ...]` locks single keys. A locked key
// takes the policy's value, or the built-in default when the policy does not
// set it; the user file cannot change it.
//
// keystore.cache_ttl and tokens.cache_pin are ceilings as well as defaults:
// the user may shorten the policy's passphrase or PIN cache, never lengthen
// it, so without a policy every private-key operation asks for the
// passphrase or PIN.
//
// Errors name the file and the line: a syntax error, a value of the wrong
// type or out of range, and unknown keys (all of them, each with its line)
// are reported as an *Error, and the daemon refuses to start with it.
// See daemon/README.md for the keys.
package config

import (
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// EnvConfig names the environment variable that points at another user
// configuration file.
const EnvConfig = "SMIMED_CONFIG"

// DefaultPolicyPath is where the machine policy lives on Unix systems.
const DefaultPolicyPath = "/etc/smimed/policy.toml"

// Keystore backends accepted by keystore.backend.
const (
	BackendAuto          = "auto"
	BackendSecretService = "secret-service"
	BackendFile          = "file"
)

// Config is the configuration in effect.
type Config struct {
	Limits     Limits     // [limits]
	Prompt     Prompt     // [prompt]
	Keystore   Keystore   // [keystore]
	Crypto     Crypto     // [crypto]
	Trust      Trust      // [trust]
	Directory  Directory  // [directory]
	Revocation Revocation // [revocation]
	Audit      Audit      // [audit]
	Tokens     Tokens     // [tokens]

	// UserFile is the user configuration file that was looked for (it may
	// not exist); empty for Default.
	UserFile string
	// UserFileLoaded reports whether UserFile existed and was read.
	UserFileLoaded bool
	// PolicyFile is the machine policy file that was looked for.
	PolicyFile string
	// PolicyFileLoaded reports whether PolicyFile existed and was read.
	PolicyFileLoaded bool
	// Locked lists the keys ("section.key") the policy locks, sorted.
	Locked []string
	// Warnings are things worth logging that did not stop the load: user
	// settings the policy overrode or capped.
	Warnings []string
}

// Limits bound what one request may cost.
type Limits struct {
	// MaxMessageBytes is the largest message a request may carry (in and
	// PKCS #12 or certificate data). Default 256 MiB.
	MaxMessageBytes int64
}

// Prompt chooses how the user is asked for passphrases and PINs.
type Prompt struct {
	// Program is the pinentry to run; empty means $SMIMED_PINENTRY, else
	// the first installed of the usual pinentry programs.
	Program string
	// AllowAgents lets a client register a prompt agent that shows the
	// prompts of its own requests (a mail client's own window) instead of
	// pinentry. Default true; a policy that locks it false keeps every
	// prompt in pinentry.
	AllowAgents bool
}

// Keystore chooses where software identities are kept.
type Keystore struct {
	// Backend is "auto" (the Secret Service when it answers on the session
	// bus, else the encrypted-file vault), "secret-service" or "file".
	Backend string
	// CacheTTL, when positive, lets an unlocked key be reused without a
	// prompt for this long. Default 0: every use asks.
	CacheTTL time.Duration
}

// Crypto is algorithm policy.
type Crypto struct {
	// AllowModern uses AES-GCM and RSAES-OAEP even for recipients who have
	// not advertised them (some mail clients, Thunderbird among them,
	// cannot read AES-GCM). Default false.
	AllowModern bool
	// DefaultHash is the signature digest: SHA-256 (default), SHA-384 or
	// SHA-512.
	DefaultHash crypto.Hash
}

// Trust chooses the trust anchors: those that verify signatures (scope
// "signing") and those that vouch for recipients' certificates found in a
// directory (scope "encryption").
type Trust struct {
	// SystemRoots adds the operating system's root certificates, for both
	// scopes. Default true; a policy that locks it false pins the
	// organisation's anchors only.
	SystemRoots bool
	// UserAnchors counts the user's own anchors (smimectl trust add).
	// Default true; a policy that locks it false refuses TrustAdd and
	// ignores the anchors the user added before.
	UserAnchors bool
	// Anchors, SigningAnchors and EncryptionAnchors are certificate files
	// or directories of them (PEM or DER): anchors for both scopes, for
	// signature verification only, and for recipients' certificates only.
	// Usually set by the machine policy.
	Anchors           []string
	SigningAnchors    []string
	EncryptionAnchors []string
	// MachineDir is the machine's anchor directory, "trust" beside the
	// policy file (/etc/smimed/trust): certificates in it are anchors for
	// both scopes, those in its signing/ and encryption/ subdirectories
	// for that scope only. Not a key: Load sets it.
	MachineDir string
	// FetchIssuers says when missing intermediate CA certificates are
	// fetched from the URLs a certificate names (AIA caIssuers):
	// FetchCompose (default: while composing or on request, never while a
	// message is read), FetchAlways or FetchNever.
	FetchIssuers string
}

// Values of trust.fetch_issuers.
const (
	FetchCompose = "compose"
	FetchAlways  = "always"
	FetchNever   = "never"
)

// Revocation configures revocation checking (OCSP, then CRLs).
type Revocation struct {
	// Policy is RevocationSoftFail (default: a status that cannot be found
	// out is shown as unknown and does not fail the operation),
	// RevocationHardFail (unknown fails it) or RevocationOff.
	Policy string
	// Timeout bounds one certificate's check. Default 5s.
	Timeout time.Duration
}

// Values of revocation.policy.
const (
	RevocationSoftFail = "soft-fail"
	RevocationHardFail = "hard-fail"
	RevocationOff      = "off"
)

// Directory configures certificate directories (used from issue 5 on).
type Directory struct {
	// LDAP lists directory URLs (ldap:// or ldaps://) to look recipients'
	// certificates up in.
	LDAP []string
}

// Audit configures the audit trail.
type Audit struct {
	// Syslog also sends each audit line to syslog/the journal when
	// /dev/log exists. Default true.
	Syslog bool
}

// Tokens configures PKCS#11 smart cards and USB tokens.
type Tokens struct {
	// Enabled looks for tokens at all (p11-kit's modules and Modules).
	// Default true.
	Enabled bool
	// Modules are PKCS#11 module paths used in addition to p11-kit's
	// configuration; a relative path is resolved like p11-kit's "module:".
	Modules []string
	// CachePIN, when positive, lets a token's PIN be reused without a
	// prompt for this long after a successful login. Default 0: every use
	// asks. Like keystore.cache_ttl, the policy's value is a ceiling.
	CachePIN time.Duration
}

// Default returns the built-in configuration, used where no file exists.
func Default() *Config {
	return &Config{
		Limits:     Limits{MaxMessageBytes: 256 << 20},
		Prompt:     Prompt{AllowAgents: true},
		Keystore:   Keystore{Backend: BackendAuto},
		Crypto:     Crypto{DefaultHash: crypto.SHA256},
		Trust:      Trust{SystemRoots: true, UserAnchors: true, FetchIssuers: FetchCompose},
		Revocation: Revocation{Policy: RevocationSoftFail, Timeout: 5 * time.Second},
		Audit:      Audit{Syslog: true},
		Tokens:     Tokens{Enabled: true},
	}
}

// Error is a configuration file that cannot be used. Its message names the
// file and the line (and, for unknown keys, every offending key with its
// line).
type Error struct {
	// File is the path of the file.
	File string
	// Line is the first line concerned, 1-based; 0 when the problem is the
	// file as a whole (unreadable).
	Line int
	// Column is the column on Line, 1-based; 0 when unknown.
	Column int
	// Key is the key concerned ("limits.max_message_bytes"), when one is.
	Key string
	// Msg says what is wrong.
	Msg string
	// Err is the cause, when there is one (an I/O error).
	Err error
}

// Error returns "file:line: message".
func (e *Error) Error() string {
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Paths says which files Load reads.
type Paths struct {
	// User is the user configuration file; empty means DefaultUserPath.
	User string
	// UserRequired makes a missing user file an error; set it when the
	// path was named explicitly (--config, SMIMED_CONFIG).
	UserRequired bool
	// Policy is the machine policy file; empty means DefaultPolicyPath
	// (none on Windows yet). A missing policy file is not an error.
	Policy string
}

// DefaultUserPath returns $XDG_CONFIG_HOME/smimed/config.toml
// (~/.config/smimed/config.toml when XDG_CONFIG_HOME is unset).
func DefaultUserPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("config: no configuration directory: %w", err)
	}
	return filepath.Join(dir, "smimed", "config.toml"), nil
}

// UserPath chooses the user configuration file: flag (from --config) when
// set, else the SMIMED_CONFIG variable read through getenv, else
// DefaultUserPath. explicit reports whether the file was named, in which
// case it must exist.
func UserPath(flag string, getenv func(string) string) (path string, explicit bool, err error) {
	if flag != "" {
		return flag, true, nil
	}
	if getenv != nil {
		if p := getenv(EnvConfig); p != "" {
			return p, true, nil
		}
	}
	p, err := DefaultUserPath()
	return p, false, err
}

// Load reads the policy and the user file and returns the configuration in
// effect. A missing default user file or policy file means defaults; any
// problem with a file that exists is an *Error naming the file and line.
func Load(p Paths) (*Config, error) {
	userPath := p.User
	if userPath == "" {
		var err error
		if userPath, err = DefaultUserPath(); err != nil {
			return nil, err
		}
	}
	policyPath := p.Policy
	if policyPath == "" && runtime.GOOS != "windows" {
		policyPath = DefaultPolicyPath
	}

	var policy, user *document
	var err error
	if policyPath != "" {
		if policy, err = readDocument(policyPath, true); err != nil {
			return nil, err
		}
	}
	if user, err = readDocument(userPath, !p.UserRequired); err != nil {
		return nil, err
	}
	cfg, err := merge(policy, user)
	if err != nil {
		return nil, err
	}
	cfg.UserFile = userPath
	cfg.UserFileLoaded = user != nil
	cfg.PolicyFile = policyPath
	cfg.PolicyFileLoaded = policy != nil
	if policyPath != "" {
		cfg.Trust.MachineDir = filepath.Join(filepath.Dir(policyPath), "trust")
	}
	return cfg, nil
}

// Parse merges a policy and a user file given as bytes (either may be nil
// for "no such file"); the names are used in error messages. Load is Parse
// over files.
func Parse(policy []byte, policyName string, user []byte, userName string) (*Config, error) {
	var pd, ud *document
	var err error
	if policy != nil {
		if pd, err = parseDocument(policyName, policy); err != nil {
			return nil, err
		}
	}
	if user != nil {
		if ud, err = parseDocument(userName, user); err != nil {
			return nil, err
		}
	}
	cfg, err := merge(pd, ud)
	if err != nil {
		return nil, err
	}
	cfg.UserFile, cfg.UserFileLoaded = userName, ud != nil
	cfg.PolicyFile, cfg.PolicyFileLoaded = policyName, pd != nil
	return cfg, nil
}

// maxFileBytes bounds a configuration file; anything larger is not one.
const maxFileBytes = 1 << 20

func readDocument(path string, missingOK bool) (*document, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && missingOK {
		return nil, nil
	}
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read: " + describeIOError(err), Err: err}
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, &Error{File: path, Msg: "cannot read: " + describeIOError(err), Err: err}
	}
	if st.IsDir() {
		return nil, &Error{File: path, Msg: "is a directory, not a configuration file"}
	}
	data := make([]byte, 0, min(st.Size()+1, maxFileBytes+1))
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		data = append(data, buf[:n]...)
		if len(data) > maxFileBytes {
			return nil, &Error{File: path, Msg: fmt.Sprintf("larger than %d bytes; not a configuration file", maxFileBytes)}
		}
		if err != nil {
			break
		}
	}
	return parseDocument(path, data)
}

func describeIOError(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// merge applies defaults, then the policy's values, then the user's values
// for keys the policy does not lock.
func merge(policy, user *document) (*Config, error) {
	cfg := Default()
	defs := keyDefs()
	known := make(map[string]bool, len(defs))
	for _, d := range defs {
		known[d.name] = true
	}
	for _, doc := range []*document{policy, user} {
		if doc == nil {
			continue
		}
		if err := doc.checkKeys(known, doc == policy); err != nil {
			return nil, err
		}
	}

	locked := map[string]bool{}
	if policy != nil {
		var err error
		if locked, err = policy.lockedKeys(known); err != nil {
			return nil, err
		}
	}

	var policyTTL, policyPIN time.Duration
	for _, d := range defs {
		if policy != nil {
			if v, ok := policy.value(d.name); ok {
				if err := d.apply(cfg, v); err != nil {
					return nil, policy.errorAt(d.name, err.Error())
				}
			}
		}
		switch d.name {
		case "keystore.cache_ttl":
			policyTTL = cfg.Keystore.CacheTTL
		case "tokens.cache_pin":
			policyPIN = cfg.Tokens.CachePIN
		}
		if user == nil {
			continue
		}
		v, ok := user.value(d.name)
		if !ok {
			continue
		}
		// Check the user's value even when it is ignored: a typo is
		// worth an error whatever the policy says.
		scratch := Default()
		if err := d.apply(scratch, v); err != nil {
			return nil, user.errorAt(d.name, err.Error())
		}
		if locked[d.name] {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s:%d: %s is locked by the machine policy %s; the user setting is ignored",
				user.name, user.line(d.name), d.name, policy.name))
			continue
		}
		if err := d.apply(cfg, v); err != nil { // cannot fail: checked above
			return nil, user.errorAt(d.name, err.Error())
		}
		if d.name == "keystore.cache_ttl" && cfg.Keystore.CacheTTL > policyTTL {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s:%d: keystore.cache_ttl %s exceeds what the machine policy allows (%s); using %s",
				user.name, user.line(d.name), cfg.Keystore.CacheTTL, policyTTL, policyTTL))
			cfg.Keystore.CacheTTL = policyTTL
		}
		if d.name == "tokens.cache_pin" && cfg.Tokens.CachePIN > policyPIN {
			cfg.Warnings = append(cfg.Warnings, fmt.Sprintf("%s:%d: tokens.cache_pin %s exceeds what the machine policy allows (%s); using %s",
				user.name, user.line(d.name), cfg.Tokens.CachePIN, policyPIN, policyPIN))
			cfg.Tokens.CachePIN = policyPIN
		}
	}
	for k := range locked {
		cfg.Locked = append(cfg.Locked, k)
	}
	slices.Sort(cfg.Locked)
	return cfg, nil
}

// keyDef is one configuration key: its dotted name and how a TOML value
// becomes part of Config.
type keyDef struct {
	name  string
	apply func(c *Config, v any) error
}

// keyDefs lists every key, in the order of daemon/README.md.
func keyDefs() []keyDef {
	return []keyDef{
		{"limits.max_message_bytes", func(c *Config, v any) error {
			n, err := sizeValue(v)
			if err == nil && n < 1024 {
				err = errors.New("must be at least 1024 bytes")
			}
			c.Limits.MaxMessageBytes = n
			return err
		}},
		{"prompt.program", func(c *Config, v any) error {
			s, err := stringValue(v)
			c.Prompt.Program = s
			return err
		}},
		{"prompt.allow_agents", func(c *Config, v any) error {
			b, err := boolValue(v)
			c.Prompt.AllowAgents = b
			return err
		}},
		{"keystore.backend", func(c *Config, v any) error {
			s, err := stringValue(v)
			if err != nil {
				return err
			}
			switch s {
			case BackendAuto, BackendSecretService, BackendFile:
				c.Keystore.Backend = s
				return nil
			}
			return fmt.Errorf("must be %q, %q or %q, not %q", BackendAuto, BackendSecretService, BackendFile, s)
		}},
		{"keystore.cache_ttl", func(c *Config, v any) error {
			d, err := durationValue(v)
			c.Keystore.CacheTTL = d
			return err
		}},
		{"crypto.allow_modern", func(c *Config, v any) error {
			b, err := boolValue(v)
			c.Crypto.AllowModern = b
			return err
		}},
		{"crypto.default_hash", func(c *Config, v any) error {
			s, err := stringValue(v)
			if err != nil {
				return err
			}
			switch strings.ToLower(strings.ReplaceAll(s, "-", "")) {
			case "sha256":
				c.Crypto.DefaultHash = crypto.SHA256
			case "sha384":
				c.Crypto.DefaultHash = crypto.SHA384
			case "sha512":
				c.Crypto.DefaultHash = crypto.SHA512
			default:
				return fmt.Errorf("must be \"sha256\", \"sha384\" or \"sha512\", not %q", s)
			}
			return nil
		}},
		{"trust.system_roots", func(c *Config, v any) error {
			b, err := boolValue(v)
			c.Trust.SystemRoots = b
			return err
		}},
		{"trust.user_anchors", func(c *Config, v any) error {
			b, err := boolValue(v)
			c.Trust.UserAnchors = b
			return err
		}},
		{"trust.anchors", func(c *Config, v any) error {
			list, err := pathList(v)
			c.Trust.Anchors = list
			return err
		}},
		{"trust.signing_anchors", func(c *Config, v any) error {
			list, err := pathList(v)
			c.Trust.SigningAnchors = list
			return err
		}},
		{"trust.encryption_anchors", func(c *Config, v any) error {
			list, err := pathList(v)
			c.Trust.EncryptionAnchors = list
			return err
		}},
		{"trust.fetch_issuers", func(c *Config, v any) error {
			s, err := oneOf(v, FetchCompose, FetchAlways, FetchNever)
			c.Trust.FetchIssuers = s
			return err
		}},
		{"directory.ldap", func(c *Config, v any) error {
			list, err := stringList(v)
			if err != nil {
				return err
			}
			for _, u := range list {
				if !strings.HasPrefix(u, "ldap://") && !strings.HasPrefix(u, "ldaps://") {
					return fmt.Errorf("%q is not an ldap:// or ldaps:// URL", u)
				}
			}
			c.Directory.LDAP = list
			return nil
		}},
		{"revocation.policy", func(c *Config, v any) error {
			s, err := oneOf(v, RevocationSoftFail, RevocationHardFail, RevocationOff)
			c.Revocation.Policy = s
			return err
		}},
		{"revocation.timeout", func(c *Config, v any) error {
			d, err := durationValue(v)
			if err == nil && (d < 100*time.Millisecond || d > time.Minute) {
				err = fmt.Errorf("%s is out of range (100ms to 1m)", d)
			}
			c.Revocation.Timeout = d
			return err
		}},
		{"audit.syslog", func(c *Config, v any) error {
			b, err := boolValue(v)
			c.Audit.Syslog = b
			return err
		}},
		{"tokens.enabled", func(c *Config, v any) error {
			b, err := boolValue(v)
			c.Tokens.Enabled = b
			return err
		}},
		{"tokens.modules", func(c *Config, v any) error {
			list, err := stringList(v)
			if err != nil {
				return err
			}
			for _, m := range list {
				if m == "" {
					return errors.New("a module path must not be empty")
				}
			}
			c.Tokens.Modules = list
			return nil
		}},
		{"tokens.cache_pin", func(c *Config, v any) error {
			d, err := durationValue(v)
			c.Tokens.CachePIN = d
			return err
		}},
	}
}

// pathList reads a list of absolute file or directory paths.
func pathList(v any) ([]string, error) {
	list, err := stringList(v)
	if err != nil {
		return nil, err
	}
	for _, p := range list {
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("%q is not an absolute path", p)
		}
	}
	return list, nil
}

// oneOf reads a string that must be one of allowed.
func oneOf(v any, allowed ...string) (string, error) {
	s, err := stringValue(v)
	if err != nil {
		return "", err
	}
	if !slices.Contains(allowed, s) {
		return "", fmt.Errorf("must be one of %q, not %q", allowed, s)
	}
	return s, nil
}

// Keys returns the dotted names of every configuration key.
func Keys() []string {
	var out []string
	for _, d := range keyDefs() {
		out = append(out, d.name)
	}
	return out
}

// HashName returns the configuration spelling of h ("sha256"), for logs.
func HashName(h crypto.Hash) string {
	return strings.ToLower(strings.ReplaceAll(h.String(), "-", ""))
}
