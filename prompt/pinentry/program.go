package pinentry

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/smimed/smimed/prompt"
)

// findProgram picks the pinentry: explicit (from configuration), else
// $SMIMED_PINENTRY from env, else the first of DefaultPrograms found in env's
// PATH. Errors wrap prompt.ErrNoPrompter.
func findProgram(explicit string, env []string) (string, error) {
	pathEnv := getenv(env, "PATH")
	for _, choice := range []struct{ name, from string }{
		{explicit, "configured"},
		{getenv(env, EnvProgram), EnvProgram},
	} {
		if choice.name == "" {
			continue
		}
		p, err := lookPath(choice.name, pathEnv)
		if err != nil {
			return "", fmt.Errorf("pinentry: %s program %q: %w", choice.from, choice.name, errJoin(prompt.ErrNoPrompter, err))
		}
		return p, nil
	}
	for _, name := range DefaultPrograms() {
		if p, err := lookPath(name, pathEnv); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("pinentry: none of %s is installed: %w", strings.Join(DefaultPrograms(), ", "), prompt.ErrNoPrompter)
}

// errJoin wraps both errors under one message ("a: b").
func errJoin(a, b error) error { return fmt.Errorf("%w: %w", a, b) }

// lookPath finds name like exec.LookPath does, but in the PATH of the
// pinentry's environment rather than the daemon's. A name with a path
// separator is used as it is.
func lookPath(name, pathEnv string) (string, error) {
	candidates := []string{name}
	if runtime.GOOS == "windows" && filepath.Ext(name) == "" {
		candidates = []string{name + ".exe", name}
	}
	if strings.ContainsRune(name, '/') || strings.ContainsRune(name, filepath.Separator) {
		for _, c := range candidates {
			if isExecutable(c) {
				return filepath.Abs(c)
			}
		}
		return "", fmt.Errorf("%s: not an executable file", name)
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // like exec.LookPath, refuse paths relative to the daemon's directory
		}
		for _, c := range candidates {
			if p := filepath.Join(dir, c); isExecutable(p) {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s: not found in PATH", name)
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return runtime.GOOS == "windows" || fi.Mode().Perm()&0o111 != 0
}

// getenv returns the last value of key in env (os.Environ form), as os/exec
// would pass it on.
func getenv(env []string, key string) string {
	val := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && envKeyEqual(k, key) {
			val = v
		}
	}
	return val
}

// firstEnv returns the first non-empty value among keys.
func firstEnv(env []string, keys ...string) string {
	for _, k := range keys {
		if v := getenv(env, k); v != "" {
			return v
		}
	}
	return ""
}

func envKeyEqual(a, b string) bool {
	if runtime.GOOS == "windows" {
		return strings.EqualFold(a, b)
	}
	return a == b
}
