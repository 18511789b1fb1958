//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/quotedprintable"
	"net/textproto"
	"os"
	"strings"
)

// outerHeader is what a mail client puts above the signed or encrypted
// entity. Our engine gets it as part of the message; openssl gets the same
// fields through -from/-to/-subject; NSS and gpgsm sign raw content and get
// only the entity.
const (
	benchFrom    = "alice@bench.example"
	benchTo      = "alice@bench.example"
	benchSubject = "smimed bench"
)

func outerHeader(size int64) string {
	return "From: Alice <" + benchFrom + ">\r\n" +
		"To: Alice <" + benchTo + ">\r\n" +
		"Subject: " + benchSubject + "\r\n" +
		"Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n" +
		fmt.Sprintf("Message-ID: <bench-%d@bench.example>\r\n", size) +
		"MIME-Version: 1.0\r\n"
}

const entityHeader = "Content-Type: text/plain; charset=us-ascii\r\n" +
	"Content-Transfer-Encoding: 7bit\r\n" +
	"\r\n"

// words are the vocabulary of the generated body: lower-case ASCII, so no
// line starts with "From " or "-" and nothing needs a transfer encoding.
var words = strings.Fields(`lorem ipsum dolor sit amet consectetur adipiscing elit sed do
eiusmod tempor incididunt ut labore et dolore magna aliqua enim ad minim veniam quis nostrud
exercitation ullamco laboris nisi aliquip ex ea commodo consequat duis aute irure in
reprehenderit voluptate velit esse cillum fugiat nulla pariatur excepteur sint occaecat
cupidatat non proident sunt culpa qui officia deserunt mollit anim id est laborum signed
encrypted message certificate token keychain daemon smart card thunderbird envelope`)

// inputs are the files of one message size.
type inputs struct {
	Size       int64  // bytes of Message
	Message    string // full RFC 5322 message: outer header + entity
	Entity     string // the MIME entity alone (Content-Type header + body)
	EntitySize int64
	Body       []byte // the body: what every decryption must give back
}

// writeInputs writes a deterministic message of exactly size bytes (and its
// entity) under dir. The body is CRLF lines of about 76 characters made of
// words drawn by a PRNG seeded with the size.
func writeInputs(dir string, size int64) (*inputs, error) {
	head := outerHeader(size) + entityHeader
	bodyLen := size - int64(len(head))
	if bodyLen < 80 {
		return nil, fmt.Errorf("message size %d too small", size)
	}
	body := makeBody(bodyLen, uint64(size))
	in := &inputs{
		Size:    size,
		Message: fmt.Sprintf("%s/msg-%d.eml", dir, size),
		Entity:  fmt.Sprintf("%s/entity-%d.eml", dir, size),
		Body:    body,
	}
	if err := writeParts(in.Message, outerHeader(size), entityHeader, body); err != nil {
		return nil, err
	}
	if err := writeParts(in.Entity, entityHeader, body); err != nil {
		return nil, err
	}
	in.EntitySize = int64(len(entityHeader) + len(body))
	return in, nil
}

func writeParts(path string, head ...any) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for _, p := range head {
		switch p := p.(type) {
		case string:
			w.WriteString(p)
		case []byte:
			w.Write(p)
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// makeBody returns exactly n bytes of CRLF-terminated lines of 70 to 76
// characters (the last line is padded or cut to fit).
func makeBody(n int64, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x5317ed))
	b := make([]byte, 0, n)
	var line []byte
	for int64(len(b)) < n {
		line = line[:0]
		limit := 70 + rng.IntN(7)
		for {
			w := words[rng.IntN(len(words))]
			if len(line) > 0 && len(line)+1+len(w) > limit {
				break
			}
			if len(line) > 0 {
				line = append(line, ' ')
			}
			line = append(line, w...)
		}
		rest := n - int64(len(b))
		if rest <= int64(len(line))+2+8 { // last line: fill exactly
			fill := int(rest) - 2
			for len(line) < fill {
				line = append(line, 'x')
			}
			line = line[:fill]
		}
		b = append(b, line...)
		b = append(b, '\r', '\n')
	}
	return b
}

// splitMessage splits raw MIME bytes into the parsed header and the body.
func splitMessage(raw []byte) (textproto.MIMEHeader, []byte, error) {
	i, sep := bytes.Index(raw, []byte("\r\n\r\n")), 4
	if j := bytes.Index(raw, []byte("\n\n")); j >= 0 && (i < 0 || j < i) {
		i, sep = j, 2
	}
	if i < 0 {
		return nil, nil, errors.New("no end of header")
	}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw[:i+sep])))
	h, err := r.ReadMIMEHeader()
	if err != nil {
		return nil, nil, fmt.Errorf("header: %w", err)
	}
	return h, raw[i+sep:], nil
}

func toCRLF(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) || (bytes.Count(b, []byte("\r\n")) == bytes.Count(b, []byte("\n"))) {
		return b
	}
	b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// sameBody checks that got (a decrypted or verified entity) carries the
// expected body once its transfer encoding is undone. It returns the
// transfer encoding got uses.
func sameBody(got, want []byte) (string, error) {
	if bytes.Equal(toCRLF(got), want) {
		return "", nil
	}
	h, body, err := splitMessage(got)
	if err != nil {
		return "", fmt.Errorf("output is not the MIME entity: %w", err)
	}
	cte := strings.ToLower(h.Get("Content-Transfer-Encoding"))
	switch cte {
	case "quoted-printable":
		if body, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body))); err != nil {
			return cte, fmt.Errorf("output's quoted-printable: %w", err)
		}
	case "base64":
		if body, err = decodeB64(body); err != nil {
			return cte, fmt.Errorf("output's base64: %w", err)
		}
	}
	if body = toCRLF(body); !bytes.Equal(body, want) {
		return cte, fmt.Errorf("output body differs from the input body (%d vs %d bytes)", len(body), len(want))
	}
	return cte, nil
}

// extractSigned takes a detached multipart/signed message and returns the
// exact bytes of the signed first part and the DER of the signature part.
func extractSigned(raw []byte) (content, sig []byte, err error) {
	h, body, err := splitMessage(raw)
	if err != nil {
		return nil, nil, err
	}
	mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil || mt != "multipart/signed" || params["boundary"] == "" {
		return nil, nil, fmt.Errorf("not multipart/signed: %q", h.Get("Content-Type"))
	}
	delim := []byte("--" + params["boundary"])
	// Parts start after a delimiter line and end at the CRLF before the next.
	var parts [][]byte
	rest := body
	start := -1
	for {
		i := bytes.Index(rest, delim)
		if i < 0 {
			break
		}
		if i > 0 && rest[i-1] != '\n' {
			rest = rest[i+len(delim):]
			continue
		}
		if start >= 0 {
			end := i
			if end > 0 && rest[end-1] == '\n' {
				end--
				if end > 0 && rest[end-1] == '\r' {
					end--
				}
			}
			parts = append(parts, rest[start:end])
		}
		after := rest[i+len(delim):]
		if bytes.HasPrefix(after, []byte("--")) {
			break
		}
		nl := bytes.IndexByte(after, '\n')
		if nl < 0 {
			break
		}
		rest = after
		start = nl + 1
	}
	if len(parts) != 2 {
		return nil, nil, fmt.Errorf("multipart/signed has %d parts, want 2", len(parts))
	}
	_, sigB64, err := splitMessage(parts[1])
	if err != nil {
		return nil, nil, fmt.Errorf("signature part: %w", err)
	}
	sig, err = decodeB64(sigB64)
	if err != nil {
		return nil, nil, fmt.Errorf("signature part: %w", err)
	}
	return parts[0], sig, nil
}

// extractPKCS7 returns the DER inside an application/pkcs7-mime message.
func extractPKCS7(raw []byte) ([]byte, error) {
	h, body, err := splitMessage(raw)
	if err != nil {
		return nil, err
	}
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if mt != "application/pkcs7-mime" && mt != "application/x-pkcs7-mime" {
		return nil, fmt.Errorf("not application/pkcs7-mime: %q", h.Get("Content-Type"))
	}
	if enc := strings.ToLower(h.Get("Content-Transfer-Encoding")); enc != "base64" {
		return nil, fmt.Errorf("transfer encoding %q, want base64", enc)
	}
	return decodeB64(body)
}

func decodeB64(b []byte) ([]byte, error) {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
			clean = append(clean, c)
		}
	}
	out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
	n, err := base64.StdEncoding.Decode(out, clean)
	return out[:n], err
}
