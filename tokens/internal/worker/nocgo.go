//go:build !(cgo && unix)

// Package worker is the PKCS#11 side of smimed's token support. This build
// has no cgo (or is not for Unix), so it cannot load PKCS#11 modules.
package worker

import (
	"errors"
	"io"
)

// Supported reports whether this build can run a worker (cgo on Unix).
const Supported = false

// Serve fails: PKCS#11 modules need cgo.
func Serve(path string, in io.Reader, out io.Writer) error {
	return errors.New("worker: this smimed was built without cgo and cannot load PKCS#11 modules")
}
