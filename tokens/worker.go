package tokens

import (
	"fmt"
	"os"
	"syscall"

	"github.com/smimed/smimed/tokens/internal/worker"
)

// WorkerArg is the first argument that turns a program into a PKCS#11
// worker: the Manager starts workers as
//
//	<Options.WorkerCommand...> <module path>
//
// where the default WorkerCommand is {os.Executable(), WorkerArg}. A
// program that uses a Manager with the default command (cmd/smimed, and
// the test binaries of packages that start one) begins its main or
// TestMain with
//
//	if tokens.IsWorker(os.Args) {
//		tokens.WorkerMain()
//	}
const WorkerArg = "__smimed-pkcs11-worker"

// WorkerSupported reports whether this build can load PKCS#11 modules
// (it needs cgo on a Unix system). Without it every module fails with
// ErrModuleFailed.
const WorkerSupported = worker.Supported

// IsWorker reports whether args (os.Args) ask for a PKCS#11 worker.
func IsWorker(args []string) bool { return len(args) == 3 && args[1] == WorkerArg }

// WorkerMain runs the PKCS#11 worker for the module named in os.Args and
// exits; it does not return. It talks to the daemon over file descriptors
// 3 (requests) and 4 (responses); whatever the module prints on stdout or
// stderr goes to the daemon's debug log. The process is made non-dumpable
// (no core dump, no ptrace by other processes of the user), since it holds
// PINs for the duration of a call.
func WorkerMain() {
	if !IsWorker(os.Args) {
		fmt.Fprintf(os.Stderr, "usage: %s %s MODULE\n", os.Args[0], WorkerArg)
		os.Exit(2)
	}
	harden()
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	in := os.NewFile(3, "pkcs11-requests")
	out := os.NewFile(4, "pkcs11-responses")
	if in == nil || out == nil {
		fmt.Fprintln(os.Stderr, "smimed pkcs11 worker: descriptors 3 and 4 are not open")
		os.Exit(2)
	}
	if err := worker.Serve(os.Args[2], in, out); err != nil {
		fmt.Fprintln(os.Stderr, "smimed pkcs11 worker:", err)
		os.Exit(1)
	}
	os.Exit(0)
}
