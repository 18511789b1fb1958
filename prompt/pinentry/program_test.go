package pinentry

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/smimed/smimed/prompt"
)

// fakeBin creates an executable (or, with mode 0o644, a non-executable) file
// named name in dir.
func fakeBin(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\nexit 0\n"), mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestFindProgram(t *testing.T) {
	root := t.TempDir()
	a, b, empty := filepath.Join(root, "a"), filepath.Join(root, "b"), filepath.Join(root, "empty")
	os.MkdirAll(empty, 0o755)
	tty := fakeBin(t, a, "pinentry-tty", 0o755)
	curses := fakeBin(t, a, "pinentry-curses", 0o755)
	gnome := fakeBin(t, b, "pinentry-gnome3", 0o755)
	fakeBin(t, a, "pinentry-qt", 0o644)                   // not executable: skipped
	os.MkdirAll(filepath.Join(a, "pinentry-gtk2"), 0o755) // a directory: skipped
	custom := fakeBin(t, b, "my-pinentry", 0o755)
	plain := fakeBin(t, empty, "pinentry", 0o755)
	notExec := filepath.Join(a, "pinentry-qt")
	path := func(dirs ...string) string { return "PATH=" + strings.Join(dirs, string(os.PathListSeparator)) }

	tests := []struct {
		name     string
		explicit string
		env      []string
		want     string
		wantErr  string // substring; with ErrNoPrompter
	}{
		{"explicit path", curses, []string{path(b), EnvProgram + "=" + gnome}, curses, ""},
		{"explicit name in PATH", "my-pinentry", []string{path(a, b)}, custom, ""},
		{"explicit wins over SMIMED_PINENTRY", "pinentry-tty", []string{path(a), EnvProgram + "=" + gnome}, tty, ""},
		{"explicit missing is an error, not a fallback", filepath.Join(root, "nope"), []string{path(a, b)}, "", "configured program"},
		{"explicit not executable", notExec, []string{path(a)}, "", "not an executable"},
		{"SMIMED_PINENTRY path", "", []string{path(a), EnvProgram + "=" + gnome}, gnome, ""},
		{"SMIMED_PINENTRY name", "", []string{path(a, b), EnvProgram + "=my-pinentry"}, custom, ""},
		{"SMIMED_PINENTRY missing", "", []string{path(a), EnvProgram + "=/nonexistent/pinentry"}, "", EnvProgram},
		{"empty SMIMED_PINENTRY falls through to PATH", "", []string{path(a), EnvProgram + "="}, curses, ""},
		{"order of programs, not of PATH dirs", "", []string{path(a, b)}, gnome, ""},
		{"first installed in order", "", []string{path(a)}, curses, ""},
		{"plain pinentry last", "", []string{path(empty)}, plain, ""},
		{"last PATH entry wins, as exec does", "", []string{path(b), path(empty)}, plain, ""},
		{"relative PATH entries ignored", "", []string{"PATH=" + "relative" + string(os.PathListSeparator) + empty}, plain, ""},
		{"none installed", "", []string{path(filepath.Join(root, "missing"))}, "", "none of pinentry-gnome3"},
		{"no PATH at all", "", nil, "", "none of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := findProgram(tt.explicit, tt.env)
			if tt.wantErr != "" {
				if !errors.Is(err, prompt.ErrNoPrompter) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("err = %v, want ErrNoPrompter saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("findProgram = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestNewNoPrompter(t *testing.T) {
	c, err := New(Options{Env: []string{"PATH=" + t.TempDir()}})
	if c != nil || !errors.Is(err, prompt.ErrNoPrompter) {
		t.Errorf("New = %v, %v; want ErrNoPrompter", c, err)
	}
}

func TestNewUsesProcessEnvironment(t *testing.T) {
	dir := t.TempDir()
	p := fakeBin(t, dir, "pinentry-from-env", 0o755)
	t.Setenv(EnvProgram, p)
	c, err := New(Options{})
	if err != nil || c.Program() != p {
		t.Fatalf("New with Env nil: %v, %v; want %s from $%s", c, err, p, EnvProgram)
	}
}

func TestGetenv(t *testing.T) {
	env := []string{"A=1", "B=", "A=2", "NOEQUALS", "C=x=y"}
	for _, tt := range []struct{ key, want string }{{"A", "2"}, {"B", ""}, {"C", "x=y"}, {"D", ""}, {"NOEQUALS", ""}} {
		if got := getenv(env, tt.key); got != tt.want {
			t.Errorf("getenv(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	if got := firstEnv(env, "D", "B", "C"); got != "x=y" {
		t.Errorf("firstEnv = %q", got)
	}
}
