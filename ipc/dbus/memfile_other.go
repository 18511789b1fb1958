//go:build unix && !linux

package dbus

import (
	"errors"
	"os"
)

// newMemFiles reports that this system has no anonymous memory files
// (memfd); small payloads then travel through pipes.
func newMemFiles() (in, out *os.File, err error) {
	return nil, nil, errors.ErrUnsupported
}
