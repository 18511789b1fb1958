//go:build linux

package dbus

import (
	"os"

	"golang.org/x/sys/unix"
)

// newMemFiles returns two anonymous files in memory (memfd), for a small
// payload and its result. The daemon reads and writes them as regular
// files.
func newMemFiles() (in, out *os.File, err error) {
	if in, err = memFile("smimed-in"); err != nil {
		return nil, nil, err
	}
	if out, err = memFile("smimed-out"); err != nil {
		_ = in.Close()
		return nil, nil, err
	}
	return in, out, nil
}

func memFile(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}
