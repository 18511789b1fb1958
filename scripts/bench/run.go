//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// result is one row: one operation by one tool on one message size.
type result struct {
	Op     operation
	Tool   string
	Size   int64
	Runs   int
	Best   time.Duration // best wall time
	CPU    time.Duration // user+system time of the best run
	MaxRSS int64         // KiB, the largest of all runs
	Err    string        // non-empty: the row FAILED
	Notes  []string

	out string // output of the last run
	fmt format
}

func (r *result) ok() bool { return r.Err == "" && r.Runs > 0 }

func (r *result) fail(format string, args ...any) {
	if r.Err == "" {
		r.Err = fmt.Sprintf(format, args...)
	}
}

// sizeResult holds the rows of one message size.
type sizeResult struct {
	Size        int64
	Runs        int
	Rows        []*result
	Unsupported []string // "tool: operation" pairs a peer cannot do
}

type task struct {
	r    *result
	spec spec
}

func (b *bench) runsFor(size int64) int {
	if b.runs > 0 {
		return b.runs
	}
	if size >= 16<<20 {
		return 3
	}
	return 5
}

func (b *bench) runSize(ctx context.Context, size int64) (*sizeResult, error) {
	dir := filepath.Join(b.dir, fmt.Sprintf("size-%d", size))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if !b.keep {
		defer os.RemoveAll(dir)
	}
	in, err := writeInputs(dir, size)
	if err != nil {
		return nil, err
	}
	sr := &sizeResult{Size: size, Runs: b.runsFor(size)}
	produced := map[string]map[string]*result{}
	logf("%s: %d runs per row", sizeLabel(size), sr.Runs)

	for _, op := range operations {
		var src *result
		if !op.Produce {
			src = pickSource(produced[op.From])
		}
		var tasks []*task
		byTool := map[string]*result{}
		for _, t := range b.tools {
			r := &result{Op: op, Tool: t.Name(), Size: size, fmt: t.Format()}
			out := filepath.Join(dir, op.ID+"."+strings.ReplaceAll(t.Name(), " ", "-")+".out")
			probe := stepInput{Path: in.Entity, Format: fmtSMIME}
			if !op.Produce {
				probe.Format = t.Format()
			}
			if _, ok := t.Command(b, op, probe, out); !ok {
				sr.Unsupported = append(sr.Unsupported, t.Name()+": "+op.Label)
				continue
			}
			sr.Rows = append(sr.Rows, r)
			byTool[t.Name()] = r
			if e, bad := b.setup[t.Name()]; bad {
				r.fail("setup: %s", e)
				continue
			}
			stepIn, err := b.inputFor(op, t, in, src, dir)
			if err != nil {
				r.fail("%v", err)
				continue
			}
			if t.Format() == fmtDER {
				if op.Produce {
					r.Notes = append(r.Notes, "writes bare CMS (DER), no MIME")
				} else {
					r.Notes = append(r.Notes, "reads bare CMS (DER) taken out of "+src.Tool+"'s message")
				}
			} else if !op.Produce {
				r.Notes = append(r.Notes, "reads "+src.Tool+"'s message")
			}
			s, _ := t.Command(b, op, stepIn, out)
			r.out = out
			tasks = append(tasks, &task{r: r, spec: s})
		}
		// Interleave the tools run by run so that drift on the machine
		// (frequency, page cache, neighbours) hits them alike.
		for rep := 0; rep < sr.Runs; rep++ {
			for _, tk := range tasks {
				if tk.r.Err != "" {
					continue
				}
				wall, cpu, rss, err := b.measure(ctx, tk.spec, tk.r.out)
				if err != nil {
					tk.r.fail("%v", err)
					continue
				}
				if tk.r.Runs == 0 || wall < tk.r.Best {
					tk.r.Best, tk.r.CPU = wall, cpu
				}
				tk.r.MaxRSS = max(tk.r.MaxRSS, rss)
				tk.r.Runs++
			}
		}
		// Every output is checked once.
		for _, tk := range tasks {
			if tk.r.Err != "" {
				continue
			}
			var err error
			if op.Produce {
				err = b.checkProduced(ctx, op, tk.r, in, dir)
			} else {
				err = checkConsumed(op, tk.r, in)
			}
			if err != nil {
				tk.r.fail("output check: %v", err)
			}
		}
		if op.Produce {
			produced[op.ID] = byTool
		}
		for _, r := range byTool {
			if r.Err != "" {
				logf("%s %s %s: FAILED: %s", sizeLabel(size), op.ID, r.Tool, r.Err)
			}
		}
	}
	return sr, nil
}

func (b *bench) tool(name string) tool {
	for _, t := range b.tools {
		if t.Name() == name {
			return t
		}
	}
	return nil
}

// pickSource chooses whose protected message the verify/decrypt rows read:
// our engine's when it worked, else OpenSSL's. Every tool reads the same one.
func pickSource(rows map[string]*result) *result {
	for _, name := range []string{"smimed", "openssl"} {
		if r := rows[name]; r != nil && r.ok() {
			return r
		}
	}
	return nil
}

// inputFor returns what tool t reads for op.
func (b *bench) inputFor(op operation, t tool, in *inputs, src *result, dir string) (stepInput, error) {
	if op.Produce {
		// Our engine takes the whole message and keeps the outer header
		// outside the signature; openssl gets the entity plus
		// -from/-to/-subject; NSS and gpgsm sign and encrypt raw content.
		if t.Name() == "smimed" {
			return stepInput{Path: in.Message, Format: fmtSMIME}, nil
		}
		return stepInput{Path: in.Entity, Format: fmtSMIME}, nil
	}
	if src == nil {
		return stepInput{}, errors.New("no input: neither smimed nor openssl produced a valid message to read")
	}
	if t.Format() == fmtSMIME {
		return stepInput{Path: src.out, Format: fmtSMIME}, nil
	}
	return extractDER(op, src.out, filepath.Join(dir, op.ID+".from-"+src.Tool))
}

// extractDER writes the CMS blob (and, for a detached signature, the signed
// content) out of an S/MIME message, once per operation.
func extractDER(op operation, smimePath, base string) (stepInput, error) {
	si := stepInput{Path: base + ".der", Format: fmtDER}
	if op.Sig {
		si.Content = base + ".content"
	}
	if _, err := os.Stat(si.Path); err == nil {
		return si, nil
	}
	raw, err := os.ReadFile(smimePath)
	if err != nil {
		return si, err
	}
	var der []byte
	if op.Sig {
		var content []byte
		if content, der, err = extractSigned(raw); err != nil {
			return si, fmt.Errorf("take CMS out of the message: %w", err)
		}
		if err := os.WriteFile(si.Content, content, 0o600); err != nil {
			return si, err
		}
	} else if der, err = extractPKCS7(raw); err != nil {
		return si, fmt.Errorf("take CMS out of the message: %w", err)
	}
	return si, os.WriteFile(si.Path, der, 0o600)
}

// measure runs one process and returns its wall time, CPU time and peak RSS
// (KiB). A non-zero exit or a missing success marker is an error carrying
// the first line the tool printed.
func (b *bench) measure(ctx context.Context, s spec, out string) (time.Duration, time.Duration, int64, error) {
	if out != "" {
		os.Remove(out)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, s.Args[0], s.Args[1:]...)
	cmd.Env = append(os.Environ(), s.Env...)
	if s.Stdin != "" {
		cmd.Stdin = strings.NewReader(s.Stdin)
	}
	var stdout, stderr capped
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if b.verbose {
		logf("run %s", strings.Join(s.Args, " "))
	}
	figures, err := spawned(cmd)
	if err != nil {
		return 0, 0, 0, err
	}
	err = cmd.Run()
	res, rerr := figures()
	if err == nil && rerr != nil {
		err = rerr
	}
	if err == nil && res.code != 0 {
		err = fmt.Errorf("exit status %d", res.code)
	}
	wall, cpu, rss := res.wall, res.cpu, res.rss
	if err != nil {
		msg := firstLine(stderr.b.Bytes(), nil)
		if stderr.b.Len() == 0 {
			msg = firstLine(stdout.b.Bytes(), nil)
		}
		return wall, cpu, rss, fmt.Errorf("%s: %s (%v)", filepath.Base(s.Args[0]), msg, err)
	}
	if s.Success != "" && !bytes.Contains(stdout.b.Bytes(), []byte(s.Success)) && !bytes.Contains(stderr.b.Bytes(), []byte(s.Success)) {
		msg := firstLine(stderr.b.Bytes(), nil)
		if stderr.b.Len() == 0 {
			msg = firstLine(stdout.b.Bytes(), nil)
		}
		return wall, cpu, rss, fmt.Errorf("%s: no %q in its output: %s", filepath.Base(s.Args[0]), s.Success, msg)
	}
	return wall, cpu, rss, nil
}

// capped keeps the first 64 KiB written to it.
type capped struct{ b bytes.Buffer }

func (c *capped) Write(p []byte) (int, error) {
	if room := 64<<10 - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// checkProduced checks a sign or encrypt output: the algorithms are the ones
// the row claims, and another tool reads it back to the original body.
func (b *bench) checkProduced(ctx context.Context, op operation, r *result, in *inputs, dir string) error {
	raw, err := os.ReadFile(r.out)
	if err != nil {
		return err
	}
	der := raw
	if r.fmt == fmtSMIME {
		if op.Sig {
			_, der, err = extractSigned(raw)
		} else {
			der, err = extractPKCS7(raw)
		}
		if err != nil {
			return fmt.Errorf("not the expected S/MIME form: %w", err)
		}
	}
	want := op.Cipher
	if cc, ok := b.tool(r.Tool).(cipherChooser); ok {
		var note string
		if want, note = cc.ContentCipher(op); note != "" {
			r.Notes = append(r.Notes, note)
		}
	}
	if err := checkAlgorithms(op, want, der); err != nil {
		return err
	}

	// The reader: OpenSSL for everyone else, our engine for OpenSSL.
	var checker tool
	for _, t := range b.tools {
		if t.Name() == "openssl" && r.Tool != "openssl" || t.Name() == "smimed" && r.Tool == "openssl" {
			checker = t
		}
	}
	self := false
	if _, bad := b.setup[checker.Name()]; bad {
		checker, self = opensslTool{}, true
		if _, bad := b.setup["openssl"]; bad {
			return errors.New("no tool left to check the output")
		}
	}
	var back operation
	for _, o := range operations {
		if o.From == op.ID {
			back = o
		}
	}
	si := stepInput{Path: r.out, Format: r.fmt}
	if r.fmt == fmtDER && op.Sig {
		si.Content = in.Entity
	}
	checkOut := filepath.Join(dir, op.ID+"."+strings.ReplaceAll(r.Tool, " ", "-")+".check")
	s, ok := checker.Command(b, back, si, checkOut)
	if !ok {
		return fmt.Errorf("%s cannot read it", checker.Name())
	}
	if _, _, _, err := b.measure(ctx, s, checkOut); err != nil {
		return fmt.Errorf("read back by %w", err)
	}
	got, err := os.ReadFile(checkOut)
	if err != nil {
		return err
	}
	cte, err := sameBody(got, in.Body)
	if err != nil {
		return fmt.Errorf("read back by %s: %w", checker.Name(), err)
	}
	if cte != "" && cte != "7bit" {
		r.Notes = append(r.Notes, "re-encodes the 7-bit body as "+cte)
	}
	note := "output read back by " + checker.Name()
	if self {
		note += " (smimed unavailable)"
	}
	r.Notes = append(r.Notes, note)
	return nil
}

// checkConsumed checks a verify or decrypt output against the input body.
func checkConsumed(op operation, r *result, in *inputs) error {
	if op.Sig && r.fmt == fmtDER {
		return nil // detached verification writes nothing; the status line was checked
	}
	got, err := os.ReadFile(r.out)
	if err != nil {
		return err
	}
	_, err = sameBody(got, in.Body)
	return err
}

func oidDER(ids ...int) []byte {
	b, err := asn1.Marshal(asn1.ObjectIdentifier(ids))
	if err != nil {
		panic(err)
	}
	return b
}

var (
	contentCiphers = []struct {
		name string
		der  []byte
	}{
		{"AES-128-CBC", oidDER(2, 16, 840, 1, 101, 3, 4, 1, 2)},
		{"AES-192-CBC", oidDER(2, 16, 840, 1, 101, 3, 4, 1, 22)},
		{"AES-256-CBC", oidDER(2, 16, 840, 1, 101, 3, 4, 1, 42)},
		{"AES-128-GCM", oidDER(2, 16, 840, 1, 101, 3, 4, 1, 6)},
		{"AES-192-GCM", oidDER(2, 16, 840, 1, 101, 3, 4, 1, 26)},
		{"AES-256-GCM", oidDER(2, 16, 840, 1, 101, 3, 4, 1, 46)},
		{"3DES-CBC", oidDER(1, 2, 840, 113549, 3, 7)},
		{"RC2-CBC", oidDER(1, 2, 840, 113549, 3, 2)},
	}
	oidSHA256        = oidDER(2, 16, 840, 1, 101, 3, 4, 2, 1)
	oidRSAPSS        = oidDER(1, 2, 840, 113549, 1, 1, 10)
	oidRSAOAEP       = oidDER(1, 2, 840, 113549, 1, 1, 7)
	oidECDHSHA256KDF = oidDER(1, 3, 132, 1, 11, 1) // dhSinglePass-stdDH-sha256kdf-scheme
)

// checkAlgorithms looks at the OIDs in a CMS blob: SHA-256 and no PSS for
// signatures; the row's content cipher (the first one named, before the
// encrypted content), no OAEP, and the SHA-256 KDF for ECDH envelopes.
func checkAlgorithms(op operation, cipher string, der []byte) error {
	head := der[:min(len(der), 64<<10)]
	if op.Sig {
		if !bytes.Contains(der, oidSHA256) {
			return errors.New("signature does not use SHA-256")
		}
		if bytes.Contains(der, oidRSAPSS) {
			return errors.New("signature uses RSA-PSS, not PKCS#1 v1.5")
		}
		return nil
	}
	first, name := -1, ""
	for _, c := range contentCiphers {
		if i := bytes.Index(head, c.der); i >= 0 && (first < 0 || i < first) {
			first, name = i, c.name
		}
	}
	if name != cipher {
		if name == "" {
			name = "an unknown cipher"
		}
		return fmt.Errorf("content encrypted with %s, not %s", name, cipher)
	}
	if bytes.Contains(head, oidRSAOAEP) {
		return errors.New("key transport is RSA-OAEP, not PKCS#1 v1.5")
	}
	if op.Key == "p256" && !bytes.Contains(head, oidECDHSHA256KDF) {
		return errors.New("key agreement is not ECDH with the SHA-256 X9.63 KDF")
	}
	return nil
}
