//go:build unix

package pinentry_test

import (
	"errors"
	"syscall"
	"testing"
)

// assertReaped checks that pid is neither running nor a zombie: kill(pid, 0)
// succeeds on both, and fails with ESRCH only once the parent has waited.
func assertReaped(t *testing.T, pid int) {
	t.Helper()
	if pid <= 0 {
		t.Fatalf("no pid")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pinentry pid %d still exists (running or zombie): kill(0) = %v", pid, err)
	}
}
