// Command smimectl is the command-line client of smimed, the per-user S/MIME
// daemon: scripts, packaging tests and people use it to list identities and
// tokens, import PKCS#12 files, manage trust anchors and recipients'
// certificates, and sign, encrypt, decrypt and verify messages. It talks to
// the daemon over the D-Bus session bus (org.smimed.Smimed1); private keys
// and PIN prompts stay with the daemon.
//
// Usage:
//
//	smimectl [--address BUSADDR] COMMAND [ARGS]
//
//	smimectl status [--json]
//	smimectl identities [--json]
//	smimectl tokens [--json]
//	smimectl import-p12 FILE [--password-file F]
//	smimectl trust add|list|remove CERT.pem
//	smimectl certs add FILE | list [--json] | find EMAIL [--json]
//	smimectl sign --from EMAIL [--opaque] [--in F] [--out F]
//	smimectl encrypt --to EMAIL[,EMAIL...] [--sign --from EMAIL] [--in F] [--out F]
//	smimectl decrypt [--in F] [--out F] [--status-json F]
//	smimectl verify  [--in F] [--status-json F]
//	smimectl help [COMMAND]
//
// Messages come from stdin and go to stdout unless --in/--out name files;
// the open files themselves are handed to the daemon (as file descriptors),
// so message size does not matter. An --out file appears only when the
// operation succeeds. verify writes the signed content to stdout. decrypt
// and verify print a one-line summary to stderr and, with --status-json F,
// write the status JSON of DESIGN.md:
//
//	{"encrypted":bool,"signed":bool,
//	 "signature":"good|bad|untrusted|expired|revoked|weak-algorithm|email-mismatch|none",
//	 "signer":{"email":"","subject":"","sha256":""},
//	 "revocation":"good|revoked|unknown|not-checked",
//	 "decryption":"ok|no-key|failed|none","layers":[...],"error":""}
//
// Exit codes: 0 done (and every signature good); 1 processed but a
// signature is not good or the message is not decryptable (no identity of
// yours among its recipients, or verify of an encrypted message), or the
// operation could not be completed (prompt cancelled, wrong PIN, keystore
// locked, daemon error); 2 usage or input error (including a malformed
// message, no identity to sign with, no certificate for a recipient); 3 the daemon
// cannot be reached (start it with `systemctl --user start smimed`, or
// `make run` in a source tree). Errors the daemon reports are printed as
// "smimectl: <message> (<Name>)", Name being the org.smimed.Error.* name.
//
// --address names the bus smimed is on; by default it is the session bus
// of $DBUS_SESSION_BUS_ADDRESS.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	a := &app{
		stdin:       os.Stdin,
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		dial:        dial,
		unreachable: unreachable,
	}
	code := a.run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
