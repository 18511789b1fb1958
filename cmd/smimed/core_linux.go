package main

import (
	"errors"

	"golang.org/x/sys/unix"
)

// disableCoreDumps makes the process undumpable (no core file, no ptrace
// attach by other processes of the user, /proc/PID/mem unreadable) and sets
// RLIMIT_CORE to 0, so that no passphrase or key can end up in a core dump.
func disableCoreDumps() error {
	return errors.Join(
		unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0),
		unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}),
	)
}
