//go:build !linux

package tokens

// harden has nothing to do on this system.
func harden() {}
