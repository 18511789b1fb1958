//go:build linux

package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The binaries under test, built once by TestMain.
var (
	smimedBin   string
	smimectlBin string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "smimed-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	smimedBin = filepath.Join(dir, "smimed")
	smimectlBin = filepath.Join(dir, "smimectl")
	for bin, pkg := range map[string]string{
		smimedBin:   "github.com/smimed/smimed/cmd/smimed",
		smimectlBin: "github.com/smimed/smimed/cmd/smimectl",
	} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: go build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	return m.Run()
}

// needTool returns the path of a peer program; a missing one fails the
// test (never a skip: a skipped interop test is a hidden hole).
func needTool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		tb.Fatalf("%s is needed for this test (./scripts/install-test-deps.sh installs it): %v", name, err)
	}
	return path
}
