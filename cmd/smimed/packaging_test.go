//go:build unix

package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	smimedbus "github.com/smimed/smimed/ipc/dbus"
)

// unitFile is a parsed INI-style unit or D-Bus service file: section →
// key → values (in order; a key may repeat).
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if _, dup := u[section]; dup {
				t.Fatalf("%s:%d: section [%s] twice", path, n, section)
			}
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Fatalf("[%s] %s: want exactly one value, have %q", section, key, vs)
	}
	return vs[0]
}

// TestPackagingFiles checks that the D-Bus activation file and the systemd
// user unit name the bus name ipc/dbus owns, and each other.
func TestPackagingFiles(t *testing.T) {
	root := filepath.Join("..", "..", "packaging")
	act := parseUnit(t, filepath.Join(root, "dbus", smimedbus.BusName+".service"))
	unit := parseUnit(t, filepath.Join(root, "systemd", "smimed.service"))

	checks := []struct {
		name      string
		got, want string
	}{
		{"activation Name", act.one(t, "D-BUS Service", "Name"), smimedbus.BusName},
		{"activation Exec", act.one(t, "D-BUS Service", "Exec"), "/usr/bin/smimed"},
		{"activation SystemdService", act.one(t, "D-BUS Service", "SystemdService"), "smimed.service"},
		{"unit Type", unit.one(t, "Service", "Type"), "dbus"},
		{"unit BusName", unit.one(t, "Service", "BusName"), smimedbus.BusName},
		{"unit ExecStart", unit.one(t, "Service", "ExecStart"), "/usr/bin/smimed"},
		{"unit NoNewPrivileges", unit.one(t, "Service", "NoNewPrivileges"), "yes"},
		{"unit LimitCORE", unit.one(t, "Service", "LimitCORE"), "0"},
		{"unit UMask", unit.one(t, "Service", "UMask"), "0077"},
		// A configuration error exits 2 (see run): restarting cannot fix it.
		{"unit RestartPreventExitStatus", unit.one(t, "Service", "RestartPreventExitStatus"), "2"},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			if c.got != c.want {
				t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
			}
		})
	}
	if filepath.Base("smimed.service") != act.one(t, "D-BUS Service", "SystemdService") {
		t.Error("the activation file names another unit than packaging/systemd/smimed.service")
	}
}

// TestUnitVerifies runs systemd's own checker over the user unit (with
// ExecStart pointed at a binary that exists here).
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is needed (Debian package systemd): %v", err)
	}
	data, err := os.ReadFile(filepath.Join("..", "..", "packaging", "systemd", "smimed.service"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	text := strings.ReplaceAll(string(data), "ExecStart=/usr/bin/smimed", "ExecStart=/bin/true")
	text = strings.ReplaceAll(text, "Documentation=file:///usr/share/doc/smimed/README.md\n", "")
	unit := filepath.Join(dir, "smimed.service")
	if err := os.WriteFile(unit, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(analyze, "verify", "--man=no", unit)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
