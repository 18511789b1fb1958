package cms

import (
	"bufio"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/smimed/smimed/smime/internal/ber"
	"github.com/smimed/smimed/smime/internal/gcmstream"
)

// GCM parameters (RFC 5084 §3.2).
const (
	gcmNonceLen      = gcmstream.NonceSize // the recommended 12 bytes
	gcmDefaultTagLen = 12                  // aes-ICVlen DEFAULT 12
	gcmTagLen        = 16                  // what this package writes, as OpenSSL does
)

// contentTypeAuthAttrs returns the DER of the authAttrs SET holding only a
// content-type attribute (RFC 5652 §11.1). It is both the AAD and, with the
// tag changed to [1], the authAttrs field.
func contentTypeAuthAttrs(ct asn1.ObjectIdentifier) ([]byte, error) {
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1ObjectIdentifier(oidContentType)
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
				b.AddASN1ObjectIdentifier(ct)
			})
		})
	})
	der, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("cms: encoding authAttrs: %w", err)
	}
	return der, nil
}

// authAttrsTag is the identifier octet of authAttrs [1] IMPLICIT SET.
const authAttrsTag = 0xa1

// withTag returns a copy of the DER element der with its (one-octet)
// identifier replaced.
func withTag(der []byte, tag byte) []byte {
	out := append([]byte(nil), der...)
	out[0] = tag
	return out
}

// createSpool makes the file that holds the ciphertext of an authenticated
// message while its tag is checked. os.CreateTemp gives it mode 0600. Where
// the system allows it the name is removed at once: the open file stays
// readable and nothing is left behind if the process dies.
func createSpool(dir string) (*os.File, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, ".smimed-spool-*")
	if err != nil {
		return nil, fmt.Errorf("cms: creating the spool file: %w", err)
	}
	if runtime.GOOS != "windows" {
		os.Remove(f.Name())
	}
	return f, nil
}

// closeSpool closes and removes a spool file; nil is ignored.
func closeSpool(f *os.File) {
	if f == nil {
		return
	}
	f.Close()
	if runtime.GOOS == "windows" {
		os.Remove(f.Name())
	}
}

// decryptGCM spools the ciphertext while hashing it, parses the rest of the
// message, verifies the tag, and only then returns a reader decrypting the
// spool.
func (e *EnvelopedReader) decryptGCM(cek []byte, sr io.Reader, spool *os.File) (io.ReadCloser, error) {
	fail := func(err error) (io.ReadCloser, error) {
		closeSpool(spool)
		return nil, err
	}
	tv, err := gcmstream.NewTagVerifier(cek, e.iv, e.tagLen)
	if err != nil {
		return fail(unsupported("GCM parameters: %v", err))
	}
	bw := bufio.NewWriterSize(spool, 64<<10)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := sr.Read(buf)
		if n > 0 {
			if _, err := tv.Write(buf[:n]); err != nil {
				return fail(malformed("encryptedContent", "%v", err))
			}
			if _, err := bw.Write(buf[:n]); err != nil {
				return fail(fmt.Errorf("cms: writing the spool file: %w", err))
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fail(berErr("encryptedContent", rerr))
		}
	}
	if err := bw.Flush(); err != nil {
		return fail(fmt.Errorf("cms: writing the spool file: %w", err))
	}
	authAttrs, mac, err := e.finishAuth()
	if err != nil {
		return fail(err)
	}
	if len(mac) != e.tagLen {
		return fail(malformed("AuthEnvelopedData", "mac is %d bytes, GCMParameters say %d", len(mac), e.tagLen))
	}
	var aad []byte
	if authAttrs != nil {
		aad = withTag(authAttrs, 0x31) // SET OF
	}
	if err := tv.Verify(aad, mac); err != nil {
		if errors.Is(err, gcmstream.ErrAuthentication) {
			return fail(fmt.Errorf("%w: GCM authentication tag does not match (wrong key or altered message)", ErrDecryption))
		}
		return fail(malformed("AuthEnvelopedData", "%v", err))
	}
	if authAttrs != nil {
		if err := e.checkAuthContentType(authAttrs); err != nil {
			return fail(err)
		}
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return fail(fmt.Errorf("cms: reading the spool file: %w", err))
	}
	ctr, err := gcmstream.NewCTRReader(cek, e.iv, bufio.NewReaderSize(spool, 64<<10))
	if err != nil {
		return fail(fmt.Errorf("cms: GCM: %w", err))
	}
	return &spoolReader{r: ctr, f: spool}, nil
}

// finishAuth parses what follows the encrypted content of an
// AuthEnvelopedData: optional authAttrs (returned as DER, with their [1]
// tag), the mac, optional unauthAttrs, and the closing of every enclosing
// element.
func (e *EnvelopedReader) finishAuth() (authAttrs, mac []byte, err error) {
	const st = "AuthEnvelopedData"
	p := envDecoder{e.d}
	if err := p.end("EncryptedContentInfo"); err != nil {
		return nil, nil, err
	}
	h, err := e.d.Next()
	if err == io.EOF {
		return nil, nil, malformed(st, "missing mac")
	}
	if err != nil {
		return nil, nil, berErr(st, err)
	}
	if h.Is(ber.ClassContext, 1) && h.Constructed {
		if authAttrs, err = e.d.ReadDER(maxAuthAttrs); err != nil {
			return nil, nil, berErr("authAttrs", err)
		}
		if h, err = e.d.Next(); err == io.EOF {
			return nil, nil, malformed(st, "missing mac")
		} else if err != nil {
			return nil, nil, berErr(st, err)
		}
	}
	if !h.Is(ber.ClassUniversal, ber.TagOctetString) {
		return nil, nil, malformed(st, "expected mac, found %v", h)
	}
	if mac, err = e.d.ReadString(gcmstream.MaxTagSize); err != nil {
		return nil, nil, berErr("mac", err)
	}
	h, err = e.d.Next()
	switch {
	case err == io.EOF:
		return authAttrs, mac, e.closeOuter()
	case err != nil:
		return nil, nil, berErr(st, err)
	case !h.Is(ber.ClassContext, 2) || !h.Constructed:
		return nil, nil, malformed(st, "unexpected %v after mac", h)
	}
	// unauthAttrs are not protected by anything; they are skipped.
	if err := e.d.Skip(); err != nil {
		return nil, nil, berErr("unauthAttrs", err)
	}
	if err := p.end(st); err != nil {
		return nil, nil, err
	}
	return authAttrs, mac, e.closeOuter()
}

// checkAuthContentType compares a content-type attribute among the
// authenticated attributes with the (unauthenticated) content type of the
// EncryptedContentInfo.
func (e *EnvelopedReader) checkAuthContentType(authAttrs []byte) error {
	s := cryptobyte.String(authAttrs)
	var set cryptobyte.String
	if !s.ReadASN1(&set, cbasn1.Tag(1).Constructed().ContextSpecific()) || !s.Empty() {
		return malformed("authAttrs", "not a SET OF Attribute")
	}
	for !set.Empty() {
		var attr, values cryptobyte.String
		var oid asn1.ObjectIdentifier
		if !set.ReadASN1(&attr, cbasn1.SEQUENCE) || !attr.ReadASN1ObjectIdentifier(&oid) ||
			!attr.ReadASN1(&values, cbasn1.SET) || !attr.Empty() {
			return malformed("authAttrs", "bad Attribute")
		}
		if !oid.Equal(oidContentType) {
			continue
		}
		var ct asn1.ObjectIdentifier
		if !values.ReadASN1ObjectIdentifier(&ct) || !values.Empty() {
			return malformed("authAttrs", "bad content-type attribute")
		}
		if !ct.Equal(e.contentType) {
			return malformed("authAttrs", "content-type attribute %v differs from the content type %v", ct, e.contentType)
		}
	}
	return nil
}

// spoolReader streams the plaintext of an authenticated message from the
// spool; Close removes the spool.
type spoolReader struct {
	r      io.Reader
	f      *os.File
	closed bool
}

func (s *spoolReader) Read(p []byte) (int, error) {
	if s.closed {
		return 0, errors.New("cms: read after Close")
	}
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = fmt.Errorf("cms: reading the spool file: %w", err)
	}
	return n, err
}

func (s *spoolReader) Close() error {
	if !s.closed {
		s.closed = true
		closeSpool(s.f)
	}
	return nil
}
