package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/smimed/smimed/ipc"
)

// marshalJSON is the JSON every --json and --status-json prints: indented,
// with a final newline.
func marshalJSON(v any) ([]byte, error) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

func (a *app) printJSON(cmd string, v any) int {
	data, err := marshalJSON(v)
	if err != nil {
		return a.fail(cmd, err)
	}
	if _, err := a.stdout.Write(data); err != nil {
		return a.fail(cmd, &inputError{err})
	}
	return exitOK
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// short shortens a hex fingerprint for tables.
func short(fp string) string {
	if len(fp) > 16 {
		return fp[:16]
	}
	return orDash(fp)
}

// date keeps the day of an RFC 3339 time.
func date(t string) string {
	if len(t) >= 10 && t[4] == '-' && t[7] == '-' {
		return t[:10]
	}
	return orDash(t)
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

func printStatus(w io.Writer, st ipc.DaemonStatus) {
	fmt.Fprintf(w, "smimed %s running, pid %d, up %s\n", orDash(st.Version), st.PID, orDash(st.Uptime))
	fmt.Fprintf(w, "keystore:   %s\n", orDash(st.Keystore))
	fmt.Fprintf(w, "identities: %d\n", st.Identities)
	fmt.Fprintf(w, "tokens:     %d\n", st.Tokens)
	fmt.Fprintf(w, "config:     %s\n", orDash(st.Config))
}

func printIdentities(w io.Writer, ids []ipc.Identity) {
	if len(ids) == 0 {
		fmt.Fprintln(w, "no identities (import one with 'smimectl import-p12 FILE')")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "ID\tEMAIL\tKEY\tUSE\tEXPIRES\tSOURCE\tSUBJECT")
	for _, id := range ids {
		var use []string
		if id.CanSign {
			use = append(use, "sign")
		}
		if id.CanDecrypt {
			use = append(use, "decrypt")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(id.ID), orDash(strings.Join(id.Emails, ",")),
			orDash(id.KeyType), orDash(strings.Join(use, ",")), date(id.NotAfter), orDash(id.Source), orDash(id.Subject))
	}
	tw.Flush()
}

func printTokens(w io.Writer, toks []ipc.Token) {
	if len(toks) == 0 {
		fmt.Fprintln(w, "no tokens present")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "LABEL\tMANUFACTURER\tSERIAL\tPIN\tPINPAD\tMODULE")
	for _, t := range toks {
		pad := "no"
		if t.PINPad {
			pad = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", orDash(t.Label), orDash(t.Manufacturer), orDash(t.Serial),
			orDash(t.PINState), pad, orDash(t.Module))
	}
	tw.Flush()
}

func printCertificates(w io.Writer, certs []ipc.Certificate) {
	if len(certs) == 0 {
		fmt.Fprintln(w, "no certificates")
		return
	}
	anchors := slices.ContainsFunc(certs, func(c ipc.Certificate) bool { return len(c.Scope) > 0 })
	tw := table(w)
	if anchors {
		fmt.Fprintln(tw, "SHA256\tSCOPE\tFROM\tEXPIRES\tSUBJECT")
		for _, c := range certs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", short(c.SHA256), orDash(strings.Join(c.Scope, "+")),
				orDash(strings.Join(c.Sources, "+")), date(c.NotAfter), orDash(c.Subject))
		}
		tw.Flush()
		return
	}
	fmt.Fprintln(tw, "SHA256\tEMAIL\tEXPIRES\tSUBJECT\tISSUER")
	for _, c := range certs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", short(c.SHA256), orDash(strings.Join(c.Emails, ",")),
			date(c.NotAfter), orDash(c.Subject), orDash(c.Issuer))
	}
	tw.Flush()
}

// summary is the one-line human account of a decrypt or verify.
func summary(st ipc.MessageStatus) string {
	var parts []string
	if st.Encrypted {
		cipher := ""
		for _, l := range st.Layers {
			if (l.Type == "enveloped" || l.Type == "auth-enveloped") && l.Cipher != "" {
				cipher = " (" + l.Cipher + ")"
				break
			}
		}
		switch st.Decryption {
		case "ok":
			parts = append(parts, "decrypted"+cipher)
		case "none":
			parts = append(parts, "encrypted"+cipher+", not decrypted")
		default:
			parts = append(parts, "encrypted"+cipher+", decryption "+st.Decryption)
		}
	}
	if st.Signed {
		who := st.Signer.Email
		if who == "" {
			who = st.Signer.Subject
		}
		sig := "signature " + st.Signature
		if who != "" {
			sig += " from " + who
		}
		if st.Signer.SHA256 != "" {
			sig += " (sha256 " + short(st.Signer.SHA256) + ")"
		}
		parts = append(parts, sig)
		parts = append(parts, "revocation "+st.Revocation)
	} else {
		parts = append(parts, "not signed")
	}
	if st.Error != "" {
		parts = append(parts, "error: "+st.Error)
	}
	return strings.Join(parts, "; ")
}
