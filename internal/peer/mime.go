package peer

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
)

// This file holds the few MIME operations the wrappers need around raw CMS:
// deliberately small, strict where it matters (the exact bytes of a signed
// part) and independent of the engine under test.

// Canonical returns b with every line ending turned into CRLF: a bare LF
// becomes CRLF, an existing CRLF stays. This is the canonical form of
// RFC 5751 section 3.1.1 for text, and the only transformation by which a
// message's content may differ between a sender and a peer that stored it
// with local line endings.
func Canonical(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/32)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

// Base64Lines encodes data as base64 in lines of 76 characters, each ended
// by CRLF (RFC 2045 section 6.8).
func Base64Lines(data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var out bytes.Buffer
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	if enc != "" {
		out.WriteString(enc)
		out.WriteString("\r\n")
	}
	return out.Bytes()
}

// SMIME types for WrapPKCS7MIME.
const (
	SignedData        = "signed-data"
	EnvelopedData     = "enveloped-data"
	AuthEnvelopedData = "authEnveloped-data"
)

// WrapPKCS7MIME wraps a DER CMS ContentInfo into an
// application/pkcs7-mime message of the given smime-type.
func WrapPKCS7MIME(der []byte, smimeType string) []byte {
	var b bytes.Buffer
	b.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: application/pkcs7-mime; smime-type=%s; name=\"smime.p7m\"\r\n", smimeType)
	b.WriteString("Content-Transfer-Encoding: base64\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"smime.p7m\"\r\n")
	b.WriteString("\r\n")
	b.Write(Base64Lines(der))
	return b.Bytes()
}

// WrapSigned assembles a multipart/signed message from the exact bytes of
// the signed MIME entity and a detached DER signature. micalg is the RFC 5751
// name of the digest ("sha-256", ...). content must be canonical and must
// not end in a line break the signer did not sign: the CRLF before the next
// boundary belongs to the boundary (RFC 2046 section 5.1.1).
func WrapSigned(content, sig []byte, micalg string) []byte {
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		panic(err)
	}
	boundary := "----peer-" + hex.EncodeToString(rnd[:])
	var b bytes.Buffer
	b.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=%s; boundary=\"%s\"\r\n", micalg, boundary)
	b.WriteString("\r\n")
	b.WriteString("This is a cryptographically signed message in MIME format.\r\n")
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.Write(content)
	b.WriteString("\r\n--" + boundary + "\r\n")
	b.WriteString("Content-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n")
	b.WriteString("Content-Transfer-Encoding: base64\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"smime.p7s\"\r\n")
	b.WriteString("Content-Description: S/MIME Cryptographic Signature\r\n")
	b.WriteString("\r\n")
	b.Write(Base64Lines(sig))
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// Micalg returns the RFC 5751 micalg name of an OpenSSL digest name
// ("sha256" -> "sha-256").
func Micalg(md string) string {
	md = strings.ToLower(md)
	if strings.HasPrefix(md, "sha") && !strings.HasPrefix(md, "sha-") && md != "sha1" {
		return "sha-" + md[3:]
	}
	if md == "sha1" {
		return "sha-1"
	}
	return md
}

// Message is an S/MIME message taken apart.
type Message struct {
	// Header is the top-level header.
	Header textproto.MIMEHeader
	// MediaType is the lower-cased top-level media type.
	MediaType string
	// Params are its parameters (smime-type, micalg, boundary, ...).
	Params map[string]string
	// Content is, for multipart/signed, the exact bytes of the first body
	// part: its header and body, without the CRLF that precedes the next
	// boundary. It is what a detached signature covers.
	Content []byte
	// CMS is the DER (or BER) CMS ContentInfo: the decoded body of an
	// application/pkcs7-mime message, or of the signature part of a
	// multipart/signed one.
	CMS []byte
}

// Parse takes an S/MIME message apart: either multipart/signed with a
// pkcs7-signature part, or application/pkcs7-mime (also the x- variants).
// LF-only line endings are accepted.
func Parse(msg []byte) (*Message, error) {
	hdr, body, err := SplitHeader(msg)
	if err != nil {
		return nil, err
	}
	mt, params, err := mime.ParseMediaType(hdr.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("peer: Content-Type %q: %w", hdr.Get("Content-Type"), err)
	}
	m := &Message{Header: hdr, MediaType: mt, Params: params}
	switch mt {
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		m.CMS, err = DecodeBody(hdr, body)
		return m, err
	case "multipart/signed":
		boundary := params["boundary"]
		if boundary == "" {
			return nil, errors.New("peer: multipart/signed without a boundary")
		}
		parts, err := SplitMultipart(body, boundary)
		if err != nil {
			return nil, err
		}
		if len(parts) != 2 {
			return nil, fmt.Errorf("peer: multipart/signed has %d parts, want 2", len(parts))
		}
		m.Content = parts[0]
		sigHdr, sigBody, err := SplitHeader(parts[1])
		if err != nil {
			return nil, fmt.Errorf("peer: signature part: %w", err)
		}
		smt, _, _ := mime.ParseMediaType(sigHdr.Get("Content-Type"))
		if smt != "application/pkcs7-signature" && smt != "application/x-pkcs7-signature" {
			return nil, fmt.Errorf("peer: signature part has type %q", smt)
		}
		m.CMS, err = DecodeBody(sigHdr, sigBody)
		return m, err
	}
	return nil, fmt.Errorf("peer: %q is not an S/MIME type", mt)
}

// SplitHeader separates a MIME entity into its parsed header and the exact
// bytes of its body. LF-only line endings are accepted.
func SplitHeader(entity []byte) (textproto.MIMEHeader, []byte, error) {
	var head, body []byte
	switch {
	case bytes.HasPrefix(entity, []byte("\r\n")):
		body = entity[2:]
	case bytes.HasPrefix(entity, []byte("\n")):
		body = entity[1:]
	default:
		i := bytes.Index(entity, []byte("\n\r\n"))
		j := bytes.Index(entity, []byte("\n\n"))
		switch {
		case i >= 0 && (j < 0 || i < j):
			head, body = entity[:i+1], entity[i+3:]
		case j >= 0:
			head, body = entity[:j+1], entity[j+2:]
		default:
			return nil, nil, errors.New("peer: no blank line after the header")
		}
	}
	// Copy: appending to head would overwrite the body it shares memory
	// with.
	h := append(bytes.Clone(head), "\r\n"...)
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(h)))
	hdr, err := r.ReadMIMEHeader()
	if err != nil {
		return nil, nil, fmt.Errorf("peer: header: %w", err)
	}
	return hdr, body, nil
}

// DecodeBody undoes an entity's Content-Transfer-Encoding (base64,
// quoted-printable, or none for 7bit, 8bit and binary).
func DecodeBody(hdr textproto.MIMEHeader, body []byte) ([]byte, error) {
	switch cte := strings.ToLower(strings.TrimSpace(hdr.Get("Content-Transfer-Encoding"))); cte {
	case "base64":
		clean := bytes.Map(func(r rune) rune {
			if r == '\r' || r == '\n' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, body)
		out := make([]byte, base64.StdEncoding.DecodedLen(len(clean)))
		n, err := base64.StdEncoding.Decode(out, clean)
		if err != nil {
			return nil, fmt.Errorf("peer: base64 body: %w", err)
		}
		return out[:n], nil
	case "quoted-printable":
		out, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		if err != nil {
			return nil, fmt.Errorf("peer: quoted-printable body: %w", err)
		}
		return out, nil
	case "", "binary", "7bit", "8bit":
		return body, nil
	default:
		return nil, fmt.Errorf("peer: unsupported Content-Transfer-Encoding %q", cte)
	}
}

// SplitMultipart returns the exact bytes of each body part between the
// boundaries of a multipart body. The line break before a delimiter belongs
// to the delimiter, not to the part.
func SplitMultipart(body []byte, boundary string) ([][]byte, error) {
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1 // start of the current part, -1 in the preamble
	pos := 0
	for pos <= len(body) {
		// The line starting at pos.
		end := bytes.IndexByte(body[pos:], '\n')
		lineEnd := len(body)
		next := len(body) + 1
		if end >= 0 {
			lineEnd = pos + end
			next = lineEnd + 1
		}
		line := bytes.TrimRight(body[pos:lineEnd], "\r")
		if bytes.HasPrefix(line, delim) {
			rest := bytes.TrimRight(line[len(delim):], " \t")
			closing := bytes.Equal(rest, []byte("--"))
			if len(rest) == 0 || closing {
				if start >= 0 {
					partEnd := pos
					// Drop the line break that belongs to the delimiter.
					if partEnd > start && body[partEnd-1] == '\n' {
						partEnd--
						if partEnd > start && body[partEnd-1] == '\r' {
							partEnd--
						}
					}
					parts = append(parts, body[start:partEnd])
				}
				if closing {
					return parts, nil
				}
				start = next
				if start > len(body) {
					start = len(body)
				}
			}
		}
		pos = next
	}
	return nil, fmt.Errorf("peer: multipart body has no closing boundary %q", "--"+boundary+"--")
}
