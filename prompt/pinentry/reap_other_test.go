//go:build !unix

package pinentry_test

import (
	"os"
	"testing"
)

// assertReaped checks that pid is gone: on Windows, opening a process that
// has exited and been waited for fails.
func assertReaped(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no pid")
	}
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Release()
		t.Errorf("pinentry pid %d still exists", pid)
	}
}
