package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/smimed/smimed/ipc"
)

// flags makes the flag set of cmd.
func (a *app) flags(cmd string) *flag.FlagSet { return a.newFlagSet(cmd) }

// args parses args for cmd, wanting between min and max operands (max < 0:
// any number). When it fails it has reported why and returns ok=false and
// the exit code.
func (a *app) args(cmd string, fs *flag.FlagSet, args []string, min, max int) (ops []string, code int, ok bool) {
	ops, err := parseArgs(fs, args)
	if err != nil {
		return nil, a.fail(cmd, err), false
	}
	switch {
	case len(ops) < min:
		return nil, a.fail(cmd, usagef(cmd, "missing argument")), false
	case max >= 0 && len(ops) > max:
		return nil, a.fail(cmd, usagef(cmd, "unexpected argument %q", ops[max])), false
	}
	return ops, 0, true
}

func (a *app) cmdStatus(ctx context.Context, args []string) int {
	fs := a.flags("status")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, code, ok := a.args("status", fs, args, 0, 0); !ok {
		return code
	}
	svc, err := a.connect(ctx)
	if err != nil {
		return a.fail("status", err)
	}
	st, err := svc.Status(ctx)
	if err != nil {
		return a.fail("status", err)
	}
	if *asJSON {
		return a.printJSON("status", st)
	}
	printStatus(a.stdout, st)
	return exitOK
}

func (a *app) cmdIdentities(ctx context.Context, args []string) int {
	fs := a.flags("identities")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, code, ok := a.args("identities", fs, args, 0, 0); !ok {
		return code
	}
	svc, err := a.connect(ctx)
	if err != nil {
		return a.fail("identities", err)
	}
	ids, err := svc.Identities(ctx)
	if err != nil {
		return a.fail("identities", err)
	}
	if *asJSON {
		return a.printJSON("identities", nonNil(ids))
	}
	printIdentities(a.stdout, ids)
	return exitOK
}

func (a *app) cmdTokens(ctx context.Context, args []string) int {
	fs := a.flags("tokens")
	asJSON := fs.Bool("json", false, "print JSON")
	if _, code, ok := a.args("tokens", fs, args, 0, 0); !ok {
		return code
	}
	svc, err := a.connect(ctx)
	if err != nil {
		return a.fail("tokens", err)
	}
	toks, err := svc.Tokens(ctx)
	if err != nil {
		return a.fail("tokens", err)
	}
	if *asJSON {
		return a.printJSON("tokens", nonNil(toks))
	}
	printTokens(a.stdout, toks)
	return exitOK
}

func (a *app) cmdImportP12(ctx context.Context, args []string) int {
	fs := a.flags("import-p12")
	pwFile := fs.String("password-file", "", "read the PKCS#12 password from the first line of `F` (default: the daemon asks)")
	ops, code, ok := a.args("import-p12", fs, args, 1, 1)
	if !ok {
		return code
	}
	data, err := a.readInput(ops[0])
	if err != nil {
		return a.fail("import-p12", err)
	}
	var password []byte // nil: the daemon asks
	if *pwFile != "" {
		if *pwFile == "-" && ops[0] == "-" {
			return a.fail("import-p12", usagef("import-p12", "FILE and --password-file cannot both be stdin"))
		}
		raw, err := a.readInput(*pwFile)
		if err != nil {
			return a.fail("import-p12", err)
		}
		password = firstLine(raw)
		defer wipe(raw)
	}
	svc, err := a.connect(ctx)
	if err != nil {
		return a.fail("import-p12", err)
	}
	id, err := svc.ImportPKCS12(ctx, data, password)
	if err != nil {
		return a.fail("import-p12", err)
	}
	fmt.Fprintf(a.stdout, "imported %s: %s, %s, %s\n", id.ID, orDash(strings.Join(id.Emails, ", ")), id.Subject, id.KeyType)
	return exitOK
}

// firstLine returns data up to its first line break, as a subslice (the
// password is never copied).
func firstLine(data []byte) []byte {
	line := data
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimSuffix(line, []byte("\r"))
	if line == nil {
		line = []byte{} // an empty password, not "ask"
	}
	return line
}

func wipe(b []byte) {
	for i := range b {
		b[i] = 0
	}
}

func (a *app) cmdTrust(ctx context.Context, args []string) int {
	fs := a.flags("trust")
	ops, code, ok := a.args("trust", fs, args, 1, 2)
	if !ok {
		return code
	}
	sub := ops[0]
	switch sub {
	case "list":
		if len(ops) != 1 {
			return a.fail("trust", usagef("trust", "unexpected argument %q", ops[1]))
		}
	case "add", "remove":
		if len(ops) != 2 {
			return a.fail("trust", usagef("trust", "trust %s needs CERT.pem", sub))
		}
	default:
		return a.fail("trust", usagef("trust", "unknown subcommand %q (add, list, remove)", sub))
	}
	var data []byte
	var err error
	switch {
	case sub == "add":
		data, err = a.readInput(ops[1])
	case sub == "remove":
		data, err = a.certOrFingerprint(ops[1])
	}
	if err != nil {
		return a.fail("trust", err)
	}
	svc, err := a.connect(ctx)
	if err != nil {
		return a.fail("trust", err)
	}
	var certs []ipc.Certificate
	switch sub {
	case "add":
		certs, err = svc.TrustAdd(ctx, data)
	case "list":
		certs, err = svc.TrustList(ctx)
	case "remove":
		certs, err = svc.TrustRemove(ctx, data)
	}
	if err != nil {
		return a.fail("trust", err)
	}
	switch sub {
	case "list":
		printCertificates(a.stdout, certs)
	case "add":
		for _, c := range certs {
			fmt.Fprintf(a.stdout, "trusted %s %s\n", c.SHA256, c.Subject)
		}
	case "remove":
		if len(certs) == 0 {
			return a.fail("trust", &inputError{fmt.Errorf("no trust anchor matches %s", ops[1])})
		}
		for _, c := range certs {
			fmt.Fprintf(a.stdout, "removed %s %s\n", c.SHA256, c.Subject)
		}
	}
	return exitOK
}

// certOrFingerprint reads the certificate file arg, or, when no such file
// exists and arg is a SHA-256 fingerprint, returns the fingerprint in hex.
func (a *app) certOrFingerprint(arg string) ([]byte, error) {
	if arg != "-" {
		if _, err := os.Stat(arg); errors.Is(err, os.ErrNotExist) {
			fp := strings.ToLower(strings.ReplaceAll(arg, ":", ""))
			if b, err := hex.DecodeString(fp); err == nil && len(b) == 32 {
				return []byte(fp), nil
			}
		}
	}
	return a.readInput(arg)
}

func (a *app) cmdCerts(ctx context.Context, args []string) int {
	fs := a.flags("certs")
	asJSON := fs.Bool("json", false, "print JSON (list, find)")
	ops, code, ok := a.args("certs", fs, args, 1, 2)
	if !ok {
		return code
	}
	sub := ops[0]
	switch sub {
	case "list":
		if len(ops) != 1 {
			return a.fail("certs", usagef("certs", "unexpected argument %q", ops[1]))
		}
	case "add", "find":
		if len(ops) != 2 {
			what := "FILE"
			if sub == "find" {
				what = "EMAIL"
			}
			return a.fail("certs", usagef("certs", "certs %s needs %s", sub, what))
		}
		if sub == "add" && *asJSON {
			return a.fail("certs", usagef("certs", "certs add has no --json"))
		}
	default:
		return a.fail("certs", usagef("certs", "unknown subcommand %q (add, list, find)", sub))
	}
	var data []byte
	if sub == "add" {
		var err error
		if data, err = a.readInput(ops[1]); err != nil {
			return a.fail("certs", err)
		}
	}
	svc, err := a.connect(ctx)
	if err != nil {
		return a.fail("certs", err)
	}
	switch sub {
	case "add":
		certs, err := svc.CertsAdd(ctx, data)
		if err != nil {
			return a.fail("certs", err)
		}
		for _, c := range certs {
			fmt.Fprintf(a.stdout, "added %s %s %s\n", c.SHA256, orDash(strings.Join(c.Emails, ",")), c.Subject)
		}
	case "list":
		certs, err := svc.CertsList(ctx)
		if err != nil {
			return a.fail("certs", err)
		}
		if *asJSON {
			return a.printJSON("certs", nonNil(certs))
		}
		printCertificates(a.stdout, certs)
	case "find":
		res, err := svc.CertsFind(ctx, ops[1])
		if err != nil {
			return a.fail("certs", err)
		}
		res.Certificates = nonNil(res.Certificates)
		if *asJSON {
			return a.printJSON("certs", res)
		}
		if len(res.Certificates) == 0 {
			fmt.Fprintf(a.stdout, "no usable certificate for %s (%s)\n", ops[1], orDash(res.Reason))
			return exitOK
		}
		printCertificates(a.stdout, res.Certificates)
	}
	return exitOK
}

func (a *app) cmdSign(ctx context.Context, args []string) int {
	fs := a.flags("sign")
	var req ipc.SignRequest
	fs.StringVar(&req.From, "from", "", "sign as `EMAIL` (picks your identity)")
	fs.BoolVar(&req.Opaque, "opaque", false, "opaque signed-data instead of multipart/signed")
	in := fs.String("in", "", "read the message from `F` (default stdin)")
	out := fs.String("out", "", "write the signed message to `F` (default stdout)")
	if _, code, ok := a.args("sign", fs, args, 0, 0); !ok {
		return code
	}
	if req.From == "" {
		return a.fail("sign", usagef("sign", "--from EMAIL is required"))
	}
	return a.transform(ctx, "sign", *in, *out, func(svc ipc.Service, r io.Reader, w io.Writer) error {
		return svc.Sign(ctx, req, r, w)
	})
}

func (a *app) cmdEncrypt(ctx context.Context, args []string) int {
	fs := a.flags("encrypt")
	var req ipc.EncryptRequest
	fs.Func("to", "encrypt to `EMAIL[,EMAIL...]` (may be repeated)", func(s string) error {
		for _, addr := range strings.Split(s, ",") {
			if addr = strings.TrimSpace(addr); addr != "" {
				req.To = append(req.To, addr)
			}
		}
		return nil
	})
	fs.BoolVar(&req.Sign, "sign", false, "sign before encrypting (needs --from)")
	fs.StringVar(&req.From, "from", "", "the sender's `EMAIL`: the signer with --sign")
	in := fs.String("in", "", "read the message from `F` (default stdin)")
	out := fs.String("out", "", "write the encrypted message to `F` (default stdout)")
	if _, code, ok := a.args("encrypt", fs, args, 0, 0); !ok {
		return code
	}
	if len(req.To) == 0 {
		return a.fail("encrypt", usagef("encrypt", "--to EMAIL is required"))
	}
	if req.Sign && req.From == "" {
		return a.fail("encrypt", usagef("encrypt", "--sign needs --from EMAIL"))
	}
	return a.transform(ctx, "encrypt", *in, *out, func(svc ipc.Service, r io.Reader, w io.Writer) error {
		return svc.Encrypt(ctx, req, r, w)
	})
}

func (a *app) cmdDecrypt(ctx context.Context, args []string) int {
	fs := a.flags("decrypt")
	in := fs.String("in", "", "read the message from `F` (default stdin)")
	out := fs.String("out", "", "write the decrypted content to `F` (default stdout)")
	statusJSON := fs.String("status-json", "", "write the status JSON to `F`")
	if _, code, ok := a.args("decrypt", fs, args, 0, 0); !ok {
		return code
	}
	return a.open(ctx, "decrypt", *in, *out, *statusJSON, func(svc ipc.Service, r io.Reader, w io.Writer) (ipc.MessageStatus, error) {
		return svc.Decrypt(ctx, ipc.OpenRequest{}, r, w)
	})
}

func (a *app) cmdVerify(ctx context.Context, args []string) int {
	fs := a.flags("verify")
	in := fs.String("in", "", "read the message from `F` (default stdin)")
	statusJSON := fs.String("status-json", "", "write the status JSON to `F`")
	if _, code, ok := a.args("verify", fs, args, 0, 0); !ok {
		return code
	}
	return a.open(ctx, "verify", *in, "", *statusJSON, func(svc ipc.Service, r io.Reader, w io.Writer) (ipc.MessageStatus, error) {
		return svc.Verify(ctx, ipc.OpenRequest{}, r, w)
	})
}

// transform runs a message operation from in to out (sign, encrypt).
func (a *app) transform(ctx context.Context, cmd, inPath, outPath string, op func(ipc.Service, io.Reader, io.Writer) error) int {
	r, err := a.openIn(inPath)
	if err != nil {
		return a.fail(cmd, err)
	}
	svc, err := a.connect(ctx)
	if err != nil {
		return a.fail(cmd, err)
	}
	o, err := a.openOut(outPath)
	if err != nil {
		return a.fail(cmd, err)
	}
	if err := op(svc, r, o.w); err != nil {
		o.abort()
		return a.fail(cmd, err)
	}
	if err := o.commit(); err != nil {
		return a.fail(cmd, err)
	}
	return exitOK
}

// open runs decrypt or verify: content to out, summary to stderr, status
// JSON to statusPath.
func (a *app) open(ctx context.Context, cmd, inPath, outPath, statusPath string, op func(ipc.Service, io.Reader, io.Writer) (ipc.MessageStatus, error)) int {
	r, err := a.openIn(inPath)
	if err != nil {
		return a.fail(cmd, err)
	}
	svc, err := a.connect(ctx)
	if err != nil {
		return a.fail(cmd, err)
	}
	o, err := a.openOut(outPath)
	if err != nil {
		return a.fail(cmd, err)
	}
	st, opErr := op(svc, r, o.w)
	if opErr != nil {
		o.abort()
		if a.exitCode(opErr) == exitUnreachable {
			return a.fail(cmd, opErr)
		}
	} else if err := o.commit(); err != nil {
		return a.fail(cmd, err)
	}
	notOpened := false
	if ipc.NameOf(opErr) == ipc.NoIdentity {
		// The message is encrypted and no identity of the user is among
		// its recipients (decrypt), or verify was asked to look inside an
		// encrypted message: processed, not decryptable. D-Bus error
		// replies carry no status, so say so here.
		notOpened = true
		st.Encrypted = true
		if cmd == "decrypt" && (st.Decryption == "" || st.Decryption == "none") {
			st.Decryption = "no-key"
		}
	}
	st = normalize(st, opErr)
	if statusPath != "" {
		if err := writeStatus(statusPath, st); err != nil {
			fmt.Fprintf(a.stderr, "smimectl %s: %v\n", cmd, err)
			if opErr == nil {
				return exitUsage
			}
		}
	}
	if opErr != nil {
		code := a.fail(cmd, opErr)
		if notOpened || st.Decryption == "no-key" || st.Decryption == "failed" {
			code = exitNotGood
		}
		return code
	}
	fmt.Fprintf(a.stderr, "%s: %s\n", cmd, summary(st))
	return openExitCode(cmd, st)
}

// openExitCode is the exit code of a decrypt or verify that completed.
func openExitCode(cmd string, st ipc.MessageStatus) int {
	switch {
	case st.Encrypted && cmd == "decrypt" && st.Decryption != "ok":
		return exitNotGood
	case st.Signed && st.Signature != "good":
		return exitNotGood
	case cmd == "verify" && !st.Signed:
		return exitNotGood // nothing was verified
	case st.Error != "":
		return exitNotGood // e.g. a message that is not S/MIME protected
	}
	return exitOK
}

// normalize fills the status fields DESIGN.md always has, so the JSON
// keeps its shape whatever the daemon left empty.
func normalize(st ipc.MessageStatus, err error) ipc.MessageStatus {
	if st.Signature == "" {
		st.Signature = "none"
	}
	if st.Revocation == "" {
		st.Revocation = "not-checked"
	}
	if st.Decryption == "" {
		st.Decryption = "none"
	}
	if st.Layers == nil {
		st.Layers = []ipc.Layer{}
	}
	if err != nil && st.Error == "" {
		st.Error = describe(err)
	}
	return st
}

// writeStatus writes the status JSON to path ("-" is stdout is not
// allowed: stdout carries the content).
func writeStatus(path string, st ipc.MessageStatus) error {
	data, err := marshalJSON(st)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, data, 0o666); err != nil {
		return fmt.Errorf("--status-json: %w", err)
	}
	return nil
}

// readInput reads a whole small input file (a certificate, a PKCS#12
// file, a password); "-" is stdin.
func (a *app) readInput(path string) ([]byte, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(a.stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, &inputError{err}
	}
	return data, nil
}

// openIn opens the message input: stdin when path is "" or "-". The
// *os.File goes to the service as is, so its fd reaches the daemon.
func (a *app) openIn(path string) (io.Reader, error) {
	if path == "" || path == "-" {
		return a.stdin, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, &inputError{err}
	}
	a.closers = append(a.closers, f)
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return nil, &inputError{fmt.Errorf("%s is a directory", path)}
	}
	return f, nil
}

// output is where a message operation writes. A regular file is written
// under a temporary name beside it and renamed into place on success, so
// a failed operation leaves no partial (or unverified) output behind.
type output struct {
	w     io.Writer
	f     *os.File
	tmp   string // temporary name, when renaming
	final string
}

// openOut opens the message output: stdout when path is "" or "-".
func (a *app) openOut(path string) (*output, error) {
	if path == "" || path == "-" {
		return &output{w: a.stdout}, nil
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		// A device, FIFO or symlink: write through it.
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return nil, &inputError{err}
		}
		return &output{w: f, f: f}, nil
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, &inputError{err}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, &inputError{err}
	}
	if fi != nil {
		_ = f.Chmod(fi.Mode().Perm())
	}
	return &output{w: f, f: f, tmp: f.Name(), final: path}, nil
}

func (o *output) commit() error {
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	if err == nil && o.tmp != "" {
		err = os.Rename(o.tmp, o.final)
	}
	if err != nil {
		if o.tmp != "" {
			os.Remove(o.tmp)
		}
		return &inputError{err}
	}
	return nil
}

func (o *output) abort() {
	if o.f == nil {
		return
	}
	o.f.Close()
	if o.tmp != "" {
		os.Remove(o.tmp)
	}
}
