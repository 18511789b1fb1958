package config

import (
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsWhenNoFile(t *testing.T) {
	dir := t.TempDir()
	cfg, err := Load(Paths{User: filepath.Join(dir, "none.toml"), Policy: filepath.Join(dir, "nopolicy.toml")})
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Trust.MachineDir = filepath.Join(dir, "trust")
	if cfg.Limits != want.Limits || cfg.Keystore != want.Keystore || cfg.Crypto != want.Crypto ||
		!reflect.DeepEqual(cfg.Trust, want.Trust) || cfg.Revocation != want.Revocation || cfg.Audit != want.Audit || cfg.Prompt != want.Prompt {
		t.Errorf("got %+v, want the defaults %+v", cfg, want)
	}
	if cfg.Limits.MaxMessageBytes != 256<<20 || cfg.Keystore.Backend != "auto" || cfg.Crypto.DefaultHash != crypto.SHA256 ||
		!cfg.Trust.SystemRoots || cfg.Keystore.CacheTTL != 0 || cfg.Crypto.AllowModern || !cfg.Prompt.AllowAgents {
		t.Errorf("unexpected defaults: %+v", cfg)
	}
	if cfg.UserFileLoaded || cfg.PolicyFileLoaded {
		t.Error("files reported loaded that do not exist")
	}
}

func TestLoadMissingExplicitFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing.toml")
	_, err := Load(Paths{User: p, UserRequired: true, Policy: filepath.Join(t.TempDir(), "p.toml")})
	var ce *Error
	if !errors.As(err, &ce) || ce.File != p || !strings.Contains(err.Error(), p) {
		t.Fatalf("want an *Error naming %s, got %v", p, err)
	}
}

func TestUserValues(t *testing.T) {
	cfg, err := Parse(nil, "policy.toml", []byte(`
[limits]
max_message_bytes = "64MiB"
[prompt]
program = "/usr/bin/pinentry-tty"
allow_agents = false
[keystore]
backend = "file"
[crypto]
allow_modern = true
default_hash = "sha384"
[trust]
system_roots = false
user_anchors = false
anchors = ["/etc/org/root.pem"]
signing_anchors = ["/etc/org/signing"]
encryption_anchors = ["/etc/org/enc.pem"]
fetch_issuers = "never"
[directory]
ldap = ["ldaps://ldap.example.org", "ldap://x.example"]
[revocation]
policy = "hard-fail"
timeout = "2s"
[audit]
syslog = false
[tokens]
enabled = false
modules = ["/opt/card/pkcs11.so"]
`), "user.toml")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Limits:   Limits{MaxMessageBytes: 64 << 20},
		Prompt:   Prompt{Program: "/usr/bin/pinentry-tty"},
		Keystore: Keystore{Backend: "file"},
		Crypto:   Crypto{AllowModern: true, DefaultHash: crypto.SHA384},
		Trust: Trust{SystemRoots: false, UserAnchors: false, Anchors: []string{"/etc/org/root.pem"},
			SigningAnchors: []string{"/etc/org/signing"}, EncryptionAnchors: []string{"/etc/org/enc.pem"}, FetchIssuers: FetchNever},
		Directory:  Directory{LDAP: []string{"ldaps://ldap.example.org", "ldap://x.example"}},
		Revocation: Revocation{Policy: RevocationHardFail, Timeout: 2 * time.Second},
		Audit:      Audit{Syslog: false},
		Tokens:     Tokens{Enabled: false, Modules: []string{"/opt/card/pkcs11.so"}},
	}
	got := *cfg
	got.UserFile, got.UserFileLoaded, got.PolicyFile, got.PolicyFileLoaded = "", false, "", false
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

// TestErrorsNameFileAndLine: every kind of bad file gives an *Error whose
// message has "file:line" and says what is wrong.
func TestErrorsNameFileAndLine(t *testing.T) {
	tests := []struct {
		name     string
		policy   string // "" = no policy
		user     string
		file     string // the file the error must name
		line     int
		contains []string
	}{
		{"syntax", "", "[limits]\nmax_message_bytes = = 3\n", "user.toml", 2, []string{"user.toml:2"}},
		{"unclosed table", "", "# c\n[limits\n", "user.toml", 2, []string{"user.toml:2"}},
		{"duplicate key", "", "[crypto]\nallow_modern = true\nallow_modern = false\n", "user.toml", 3, []string{"already defined"}},
		{"wrong type", "", "[limits]\n\nmax_message_bytes = true\n", "user.toml", 3, []string{"user.toml:3", "limits.max_message_bytes", "a boolean"}},
		{"bad size unit", "", "[limits]\nmax_message_bytes = \"12 parsecs\"\n", "user.toml", 2, []string{"unknown unit"}},
		{"too small", "", "[limits]\nmax_message_bytes = 10\n", "user.toml", 2, []string{"at least 1024"}},
		{"bad backend", "", "[keystore]\nbackend = \"kwallet\"\n", "user.toml", 2, []string{"keystore.backend", "\"kwallet\""}},
		{"bad duration", "", "[keystore]\ncache_ttl = \"5 minutes\"\n", "user.toml", 2, []string{"keystore.cache_ttl", "not a duration"}},
		{"duration as integer", "", "[keystore]\ncache_ttl = 300\n", "user.toml", 2, []string{"duration string"}},
		{"bad hash", "", "[crypto]\ndefault_hash = \"md5\"\n", "user.toml", 2, []string{"crypto.default_hash"}},
		{"bad ldap", "", "[directory]\nldap = [\"http://x\"]\n", "user.toml", 2, []string{"ldap://"}},
		{"ldap not strings", "", "[directory]\nldap = [1]\n", "user.toml", 2, []string{"array of strings"}},
		{"section not a table", "", "crypto = 3\n", "user.toml", 1, []string{"must be a section"}},
		{"unknown keys", "", "[limits]\nmax_message_bytes = 2048\nmax_msg = 1\n[prompt]\nprogramm = \"x\"\n[bogus]\nk = 1\n", "user.toml", 3,
			[]string{"limits.max_msg (line 3)", "prompt.programm (line 5)", "bogus (line 6)"}},
		{"unknown dotted key", "", "[crypto]\nfoo.bar = 1\n", "user.toml", 2, []string{"crypto.foo (line 2)"}},
		{"locked in user file", "", "[crypto]\nlocked = true\n", "user.toml", 2, []string{"only the machine policy"}},
		{"enforce in user file", "", "enforce = [\"crypto\"]\n", "user.toml", 1, []string{"only the machine policy"}},
		{"policy syntax", "[crypto\n", "", "policy.toml", 1, []string{"policy.toml:1"}},
		{"policy bad enforce", "\nenforce = [\"crypto.allow_modernity\"]\n", "", "policy.toml", 2, []string{"crypto.allow_modernity", "not a configuration key"}},
		{"policy locked not bool", "[crypto]\nlocked = \"yes\"\n", "", "policy.toml", 2, []string{"true or false"}},
		{"bad user value under a lock", "[crypto]\nlocked = true\n", "[crypto]\nallow_modern = \"yes\"\n", "user.toml", 2, []string{"crypto.allow_modern"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			paths := Paths{User: filepath.Join(dir, "user.toml"), Policy: filepath.Join(dir, "policy.toml")}
			if tc.user != "" {
				write(t, dir, "user.toml", tc.user)
			}
			if tc.policy != "" {
				write(t, dir, "policy.toml", tc.policy)
			}
			_, err := Load(paths)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("want *Error, got %T %v", err, err)
			}
			if filepath.Base(ce.File) != tc.file || ce.Line != tc.line {
				t.Errorf("error at %s:%d, want %s:%d (%v)", ce.File, ce.Line, tc.file, tc.line, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, filepath.Join(dir, tc.file)+":") {
				t.Errorf("message does not start with the file path: %q", msg)
			}
			for _, c := range tc.contains {
				if !strings.Contains(msg, c) {
					t.Errorf("message %q lacks %q", msg, c)
				}
			}
		})
	}
}

// TestPolicy: a policy value is the machine default; locked sections and
// enforced keys win over the user file; cache_ttl is capped by the policy.
func TestPolicy(t *testing.T) {
	tests := []struct {
		name         string
		policy, user string
		check        func(t *testing.T, c *Config)
		warnings     int
	}{
		{
			name:   "unlocked policy value is a default the user may change",
			policy: "[crypto]\nallow_modern = true\ndefault_hash = \"sha512\"\n",
			user:   "[crypto]\nallow_modern = false\n",
			check: func(t *testing.T, c *Config) {
				if c.Crypto.AllowModern || c.Crypto.DefaultHash != crypto.SHA512 {
					t.Errorf("crypto = %+v", c.Crypto)
				}
			},
		},
		{
			name:   "locked section wins for every key it sets",
			policy: "[crypto]\nlocked = true\nallow_modern = true\n[limits]\nmax_message_bytes = 4096\n",
			user:   "[crypto]\nallow_modern = false\ndefault_hash = \"sha384\"\n[limits]\nmax_message_bytes = 8192\n",
			check: func(t *testing.T, c *Config) {
				if !c.Crypto.AllowModern {
					t.Error("the locked policy value lost")
				}
				if c.Crypto.DefaultHash != crypto.SHA256 {
					t.Errorf("a locked section keeps the built-in default for keys the policy does not set; got %v", c.Crypto.DefaultHash)
				}
				if c.Limits.MaxMessageBytes != 8192 {
					t.Errorf("an unlocked section: user value lost, got %d", c.Limits.MaxMessageBytes)
				}
				if !reflect.DeepEqual(c.Locked, []string{"crypto.allow_modern", "crypto.default_hash"}) {
					t.Errorf("Locked = %v", c.Locked)
				}
			},
			warnings: 2,
		},
		{
			name:   "enforce locks single keys and whole sections",
			policy: "enforce = [\"prompt.program\", \"trust\"]\n[prompt]\nprogram = \"/usr/bin/pinentry-gnome3\"\n[keystore]\nbackend = \"file\"\n",
			user:   "[prompt]\nprogram = \"/tmp/evil\"\n[trust]\nsystem_roots = false\n[keystore]\nbackend = \"secret-service\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Prompt.Program != "/usr/bin/pinentry-gnome3" {
					t.Errorf("program = %q", c.Prompt.Program)
				}
				if !c.Trust.SystemRoots {
					t.Error("enforced section: the user turned system roots off")
				}
				if c.Keystore.Backend != "secret-service" {
					t.Errorf("backend = %q, the user may change an unenforced key", c.Keystore.Backend)
				}
			},
			warnings: 2,
		},
		{
			name:   "policy locks prompt agents off",
			policy: "enforce = [\"prompt.allow_agents\"]\n[prompt]\nallow_agents = false\n",
			user:   "[prompt]\nallow_agents = true\nprogram = \"/usr/bin/pinentry-tty\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Prompt.AllowAgents {
					t.Error("the user turned prompt agents on against a policy that locks them off")
				}
				if c.Prompt.Program != "/usr/bin/pinentry-tty" {
					t.Errorf("program = %q, the user may change an unenforced key", c.Prompt.Program)
				}
				if !slices.Equal(c.Locked, []string{"prompt.allow_agents"}) {
					t.Errorf("Locked = %v", c.Locked)
				}
			},
			warnings: 1,
		},
		{
			name:   "policy default for prompt agents, user may change it",
			policy: "[prompt]\nallow_agents = false\n",
			user:   "[prompt]\nallow_agents = true\n",
			check: func(t *testing.T, c *Config) {
				if !c.Prompt.AllowAgents {
					t.Error("an unlocked policy value beat the user's")
				}
			},
		},
		{
			name:   "no policy: no passphrase cache",
			policy: "",
			user:   "[keystore]\ncache_ttl = \"10m\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Keystore.CacheTTL != 0 {
					t.Errorf("cache_ttl = %v without a policy allowing it", c.Keystore.CacheTTL)
				}
			},
			warnings: 1,
		},
		{
			name:   "policy cache_ttl is default and ceiling",
			policy: "[keystore]\ncache_ttl = \"5m\"\n",
			user:   "",
			check: func(t *testing.T, c *Config) {
				if c.Keystore.CacheTTL != 5*time.Minute {
					t.Errorf("cache_ttl = %v", c.Keystore.CacheTTL)
				}
			},
		},
		{
			name:   "tokens defaults: enabled, no PIN cache",
			policy: "",
			user:   "[tokens]\nmodules = [\"/opt/card/lib.so\"]\ncache_pin = \"1m\"\n",
			check: func(t *testing.T, c *Config) {
				if !c.Tokens.Enabled || c.Tokens.CachePIN != 0 || len(c.Tokens.Modules) != 1 || c.Tokens.Modules[0] != "/opt/card/lib.so" {
					t.Errorf("tokens = %+v", c.Tokens)
				}
			},
			warnings: 1,
		},
		{
			name:   "policy cache_pin is a ceiling; tokens lockable",
			policy: "enforce = [\"tokens.enabled\"]\n[tokens]\ncache_pin = \"2m\"\nenabled = false\n",
			user:   "[tokens]\ncache_pin = \"30s\"\nenabled = true\n",
			check: func(t *testing.T, c *Config) {
				if c.Tokens.Enabled || c.Tokens.CachePIN != 30*time.Second {
					t.Errorf("tokens = %+v", c.Tokens)
				}
			},
			warnings: 1,
		},
		{
			name:   "user may shorten the cache",
			policy: "[keystore]\ncache_ttl = \"5m\"\n",
			user:   "[keystore]\ncache_ttl = \"30s\"\n",
			check: func(t *testing.T, c *Config) {
				if c.Keystore.CacheTTL != 30*time.Second {
					t.Errorf("cache_ttl = %v", c.Keystore.CacheTTL)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var policy, user []byte
			if tc.policy != "" {
				policy = []byte(tc.policy)
			}
			if tc.user != "" {
				user = []byte(tc.user)
			}
			c, err := Parse(policy, "policy.toml", user, "user.toml")
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
			if len(c.Warnings) != tc.warnings {
				t.Errorf("warnings = %q, want %d", c.Warnings, tc.warnings)
			}
			for _, w := range c.Warnings {
				if !strings.HasPrefix(w, "user.toml:") {
					t.Errorf("warning does not name the user file and line: %q", w)
				}
			}
		})
	}
}

func TestUserPath(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	tests := []struct {
		flag     string
		env      map[string]string
		want     string
		explicit bool
	}{
		{"/a.toml", map[string]string{EnvConfig: "/b.toml"}, "/a.toml", true},
		{"", map[string]string{EnvConfig: "/b.toml"}, "/b.toml", true},
		{"", nil, "/xdg/smimed/config.toml", false},
	}
	for _, tc := range tests {
		got, explicit, err := UserPath(tc.flag, env(tc.env))
		if err != nil || got != tc.want || explicit != tc.explicit {
			t.Errorf("UserPath(%q, %v) = %q, %v, %v; want %q, %v", tc.flag, tc.env, got, explicit, err, tc.want, tc.explicit)
		}
	}
}

// TestEveryKeyDocumented keeps daemon/README.md in step with the keys.
func TestEveryKeyDocumented(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		_, name, _ := strings.Cut(k, ".")
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("daemon/README.md does not document %s", k)
		}
	}
}
