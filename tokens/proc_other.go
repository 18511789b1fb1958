//go:build !linux

package tokens

import "os/exec"

// setProcAttr does nothing here: a worker notices the daemon's end when its
// request pipe closes.
func setProcAttr(*exec.Cmd) {}
