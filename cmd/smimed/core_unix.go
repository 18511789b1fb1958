//go:build unix && !linux

package main

import "golang.org/x/sys/unix"

// disableCoreDumps sets RLIMIT_CORE to 0, so that no passphrase or key can
// end up in a core dump.
func disableCoreDumps() error {
	return unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0})
}
