package tokens

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes the kernel kill the worker when the daemon dies, even
// when the worker is stuck inside a module and never reads its pipe again.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
