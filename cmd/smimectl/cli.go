package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/smimed/smimed/ipc"
)

// Exit codes of the DESIGN.md contract.
const (
	exitOK          = 0 // done, and any signature good
	exitNotGood     = 1 // processed, but a signature is not good or the message not decryptable; or the operation failed
	exitUsage       = 2 // usage or input error
	exitUnreachable = 3 // the daemon cannot be reached
)

// app is one smimectl invocation. Everything it touches from the outside
// is a field, so tests can run it against a fake service.
type app struct {
	stdin  io.Reader // os.Stdin in main: passed through as is, so its fd reaches the daemon
	stdout io.Writer // os.Stdout in main: likewise
	stderr io.Writer

	// dial connects to the daemon at a bus address ("" = the session bus).
	dial func(ctx context.Context, address string) (ipc.Service, error)
	// unreachable reports whether err means no daemon answers.
	unreachable func(err error) bool

	address string // --address
	svc     ipc.Service
	closers []io.Closer
}

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis after the name
	summary string
	// run parses args and does the work, returning the exit code.
	run func(a *app, ctx context.Context, args []string) int
}

var commands []*command

func init() {
	commands = []*command{
		{"status", "[--json]", "show the daemon's state", (*app).cmdStatus},
		{"identities", "[--json]", "list your identities that can sign or decrypt (keystore and tokens)", (*app).cmdIdentities},
		{"tokens", "[--json]", "list PKCS#11 tokens that are present", (*app).cmdTokens},
		{"import-p12", "FILE [--password-file F]", "import a PKCS#12 file into the keystore", (*app).cmdImportP12},
		{"trust", "add|list|remove CERT.pem", "manage trust anchors (remove also takes a SHA-256 fingerprint)", (*app).cmdTrust},
		{"certs", "add FILE | list [--json] | find EMAIL [--json]", "manage recipients' certificates (address book, then the LDAP directory)", (*app).cmdCerts},
		{"sign", "--from EMAIL [--opaque] [--in F] [--out F]", "sign a message", (*app).cmdSign},
		{"encrypt", "--to EMAIL[,EMAIL...] [--sign --from EMAIL] [--in F] [--out F]", "encrypt a message, optionally signing it first", (*app).cmdEncrypt},
		{"decrypt", "[--in F] [--out F] [--status-json F]", "decrypt a message and verify the signatures inside", (*app).cmdDecrypt},
		{"verify", "[--in F] [--status-json F]", "verify a signed message and write its content to stdout", (*app).cmdVerify},
		{"help", "[COMMAND]", "show this help, or a command's", (*app).cmdHelp},
	}
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// usageError is a wrong invocation: exit 2 with the command's synopsis.
type usageError struct {
	cmd string // "" for the top level
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd, format string, args ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, args...)}
}

// inputError is a problem with the user's input (a file that cannot be
// read or written): exit 2.
type inputError struct{ err error }

func (e *inputError) Error() string { return e.err.Error() }
func (e *inputError) Unwrap() error { return e.err }

// errHelp asks for the command's help (-h, --help): exit 0.
var errHelp = errors.New("help requested")

// run runs smimectl with the arguments after the program name and returns
// the exit code.
func (a *app) run(ctx context.Context, args []string) int {
	defer a.close()
	// Global flags come before the command; --address is also accepted
	// among every command's flags.
	fs := a.newFlagSet("")
	rest, err := parseFirst(fs, args)
	if err == errHelp {
		a.printHelp(a.stdout)
		return exitOK
	}
	if err != nil {
		return a.fail("", err)
	}
	if len(rest) == 0 {
		a.printHelp(a.stderr)
		return exitUsage
	}
	c := lookupCommand(rest[0])
	if c == nil {
		return a.fail("", usagef("", "unknown command %q", rest[0]))
	}
	return c.run(a, ctx, rest[1:])
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		_ = a.closers[i].Close()
	}
	a.closers = nil
}

// newFlagSet makes a flag set for cmd with the global --address flag.
func (a *app) newFlagSet(cmd string) *flag.FlagSet {
	fs := flag.NewFlagSet("smimectl "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by fail
	fs.StringVar(&a.address, "address", a.address, "D-Bus address of the bus smimed is on (default: the session bus, $DBUS_SESSION_BUS_ADDRESS)")
	return fs
}

// parseFirst parses leading flags and stops at the first positional
// argument, like flag.Parse, for the global flags.
func parseFirst(fs *flag.FlagSet, args []string) ([]string, error) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return args[i+1:], nil
		}
		if !isFlag(arg) {
			return args[i:], nil
		}
		n, err := parseOne(fs, args[i:])
		if err != nil {
			return nil, err
		}
		i += n - 1
	}
	return nil, nil
}

// parseArgs parses flags anywhere among args (DESIGN.md writes
// `import-p12 FILE [--password-file F]`, flags after operands) and
// returns the operands in order. "--" ends the flags; "-" is an operand
// (stdin).
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return append(operands, args[i+1:]...), nil
		}
		if !isFlag(arg) {
			operands = append(operands, arg)
			continue
		}
		n, err := parseOne(fs, args[i:])
		if err != nil {
			return nil, err
		}
		i += n - 1
	}
	return operands, nil
}

func isFlag(arg string) bool { return len(arg) > 1 && arg[0] == '-' }

// parseOne parses the flag at args[0] (and its value from args[1] when it
// takes one and is not written -flag=value); it returns how many
// arguments it used.
func parseOne(fs *flag.FlagSet, args []string) (int, error) {
	name := strings.TrimLeft(args[0], "-")
	hasValue := false
	if i := strings.IndexByte(name, '='); i >= 0 {
		name, hasValue = name[:i], true
	}
	if len(args[0])-len(strings.TrimLeft(args[0], "-")) > 2 || name == "" {
		return 0, usagef(cmdName(fs), "bad flag syntax: %s", args[0])
	}
	f := fs.Lookup(name)
	if f == nil {
		if name == "h" || name == "help" {
			return 0, errHelp
		}
		return 0, usagef(cmdName(fs), "unknown flag: --%s", name)
	}
	n := 1
	if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); !hasValue && !(ok && bf.IsBoolFlag()) {
		if len(args) < 2 {
			return 0, usagef(cmdName(fs), "flag --%s needs a value", name)
		}
		n = 2
	}
	if err := fs.Parse(args[:n]); err != nil {
		return 0, usagef(cmdName(fs), "%v", err)
	}
	if fs.NArg() != 0 { // cannot happen: Parse saw exactly one flag
		return 0, usagef(cmdName(fs), "bad flag syntax: %s", args[0])
	}
	return n, nil
}

func cmdName(fs *flag.FlagSet) string {
	return strings.TrimSpace(strings.TrimPrefix(fs.Name(), "smimectl"))
}

// connect dials the daemon once per invocation.
func (a *app) connect(ctx context.Context) (ipc.Service, error) {
	if a.svc != nil {
		return a.svc, nil
	}
	svc, err := a.dial(ctx, a.address)
	if err != nil {
		return nil, err
	}
	a.svc = svc
	if c, ok := svc.(io.Closer); ok {
		a.closers = append(a.closers, c)
	}
	return svc, nil
}

// fail reports err on stderr and returns its exit code.
func (a *app) fail(cmd string, err error) int {
	code := a.exitCode(err)
	switch {
	case err == errHelp:
		a.printCommandHelp(a.stdout, cmd)
		return exitOK
	case code == exitUnreachable:
		where := "the session bus"
		if a.address != "" {
			where = a.address
		} else if env := os.Getenv("DBUS_SESSION_BUS_ADDRESS"); env != "" {
			where = "the session bus (" + env + ")"
		}
		msg := err.Error()
		if _, rest, ok := strings.Cut(msg, "not reachable: "); ok {
			msg = rest // the client's own "smimed is not reachable" says what we say
		}
		fmt.Fprintf(a.stderr, "smimectl: cannot reach smimed on %s: %s\n", where, msg)
		fmt.Fprintln(a.stderr, "smimectl: start the daemon with `systemctl --user start smimed`, or with `make run` in a source tree")
		return code
	}
	var ue *usageError
	if errors.As(err, &ue) {
		if ue.cmd != "" {
			fmt.Fprintf(a.stderr, "smimectl %s: %s\n", ue.cmd, ue.msg)
			if c := lookupCommand(ue.cmd); c != nil {
				fmt.Fprintf(a.stderr, "usage: smimectl %s %s\n", c.name, c.args)
			}
		} else {
			fmt.Fprintf(a.stderr, "smimectl: %s\n", ue.msg)
			fmt.Fprintln(a.stderr, "run 'smimectl help' for usage")
		}
		return code
	}
	fmt.Fprintf(a.stderr, "smimectl: %s\n", describe(err))
	return code
}

// describe renders err for people: a typed daemon error as
// "<message> (<Name>)".
func describe(err error) string {
	var e *ipc.Error
	if errors.As(err, &e) {
		msg := e.Message
		if msg == "" {
			msg = string(e.Name)
		}
		return fmt.Sprintf("%s (%s)", msg, e.Name)
	}
	if errors.Is(err, context.Canceled) {
		return "interrupted (Cancelled)"
	}
	return err.Error()
}

// exitCode maps an error onto the contract's exit codes.
func (a *app) exitCode(err error) int {
	var ue *usageError
	var ie *inputError
	var e *ipc.Error
	switch {
	case err == nil, err == errHelp:
		return exitOK
	case errors.As(err, &ue), errors.As(err, &ie):
		return exitUsage
	case errors.As(err, &e):
		// Checked before unreachable: a typed error came from a daemon
		// that answered.
		switch e.Name {
		case ipc.BadMessage, ipc.TooLarge, ipc.Unsupported, ipc.NoIdentity, ipc.NoRecipientCertificate:
			return exitUsage
		}
		return exitNotGood
	case a.unreachable != nil && a.unreachable(err):
		return exitUnreachable
	}
	return exitNotGood
}

// printHelp writes the overall help.
func (a *app) printHelp(w io.Writer) {
	fmt.Fprint(w, `smimectl talks to smimed, your S/MIME daemon, over the D-Bus session bus.

usage: smimectl [--address BUSADDR] COMMAND [ARGS]

commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, helpFooter)
}

const helpFooter = `
Messages are read from stdin and written to stdout unless --in/--out name
files ("-" is stdin/stdout); the daemon reads and writes them directly
through file descriptors. An output file appears only when the operation
succeeds.

Exit codes:
  0  done (and every signature good)
  1  processed, but a signature is not good or the message is not
     decryptable (none of your identities is a recipient; verify of an
     encrypted message; not S/MIME at all); also an operation that could
     not be completed (prompt cancelled, wrong PIN, keystore locked,
     daemon error)
  2  usage or input error (bad arguments, unreadable file, malformed
     message, no identity to sign with or no certificate for a recipient)
  3  the daemon cannot be reached: start it with
     'systemctl --user start smimed' (or 'make run' in a source tree)

Errors reported by the daemon are shown as "smimectl: <message> (<Name>)",
<Name> being one of the org.smimed.Error.* names.

Run 'smimectl help COMMAND' for a command's flags and output.
`

// commandHelp holds the longer help of each command.
var commandHelp = map[string]string{
	"status": `Shows the daemon's version, pid, keystore backend, how many identities
and tokens it sees, its config file and uptime. --json prints the object:
{"version","pid","keystore","identities","tokens","config","uptime"}.`,
	"identities": `Lists your own identities that can sign or decrypt: software keys from the
keystore and keys on PKCS#11 tokens. --json prints an array of
{"id","label","emails","subject","issuer","not_after","sha256","source",
"key_type","can_sign","can_decrypt"}.`,
	"tokens": `Lists the PKCS#11 tokens that are present. --json prints an array of
{"label","manufacturer","serial","module","pin_state","pin_pad"}.`,
	"import-p12": `Imports a PKCS#12 file (FILE "-" reads stdin). The file's password is read
from --password-file (its first line) or, without it, asked by the daemon's
PIN prompt; the daemon then asks for the new passphrase that protects the key.
Prints the new identity.`,
	"trust": `trust add CERT.pem      adds the certificates in CERT.pem (PEM or DER) as trust anchors
trust list              lists the trust anchors
trust remove CERT.pem   removes the anchors in CERT.pem; the argument may also be
                        a SHA-256 fingerprint (hex, colons allowed)
remove exits 2 when nothing matched.`,
	"certs": `certs add FILE            adds recipients' certificates (PEM, DER, or a certs-only or
                          signed S/MIME message) to the address book
certs list [--json]       lists the address book
certs find EMAIL [--json] shows the usable certificates for EMAIL (address book, then
                          the LDAP directory), or why there is none; --json prints
                          {"email","certificates":[...],"reason"}`,
	"sign": `Signs the message with your identity for --from EMAIL: multipart/signed
by default, application/pkcs7-mime signed-data with --opaque. The daemon asks
for the key's passphrase or PIN.`,
	"encrypt": `Encrypts the message to every --to address (comma-separated, or --to
repeated) and to the sender. --sign --from EMAIL signs it first.`,
	"decrypt": `Opens every S/MIME layer, decrypting and verifying the signatures inside, and
writes the innermost content to --out (stdout). A one-line summary goes to
stderr; --status-json F writes the status JSON:
{"encrypted","signed","signature","signer":{"email","subject","sha256"},
 "revocation","decryption","layers":[...],"error"}
signature: good|bad|untrusted|expired|revoked|weak-algorithm|email-mismatch|none
revocation: good|revoked|unknown|not-checked; decryption: ok|no-key|failed|none
Exits 1 when a signature is not good or the message cannot be decrypted.`,
	"verify": `Checks the signatures of a signed message without decrypting and writes the
signed content to stdout. A one-line summary goes to stderr; --status-json F
writes the status JSON (see 'smimectl help decrypt'). Exits 1 unless the
message carries a good signature.`,
	"help": `Shows the overall help, or a command's.`,
}

// printCommandHelp writes one command's help; the overall help for "".
func (a *app) printCommandHelp(w io.Writer, name string) {
	c := lookupCommand(name)
	if c == nil {
		a.printHelp(w)
		return
	}
	fmt.Fprintf(w, "usage: smimectl %s %s\n\n%s\n", c.name, c.args, commandHelp[c.name])
	fmt.Fprintln(w, "\nGlobal flag: --address BUSADDR (the bus smimed is on; default: the session bus).")
}

func (a *app) cmdHelp(_ context.Context, args []string) int {
	if len(args) == 0 {
		a.printHelp(a.stdout)
		return exitOK
	}
	if lookupCommand(args[0]) == nil {
		return a.fail("", usagef("", "unknown command %q", args[0]))
	}
	a.printCommandHelp(a.stdout, args[0])
	return exitOK
}

// commandNames lists the commands, sorted, for tests.
func commandNames() []string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	sort.Strings(names)
	return names
}
