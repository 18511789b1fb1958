// Command smimed is the per-user S/MIME daemon. On Windows it will serve a
// per-user named pipe; that transport does not exist yet, so this build
// only says so.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "smimed: the Windows named-pipe transport is not implemented yet")
	os.Exit(1)
}
