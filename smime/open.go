package smime

import (
	"bufio"
	"context"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/smimed/smimed/smime/cms"
)

// DecryptionKey is the key FindKey offers for one of a message's
// recipients.
type DecryptionKey struct {
	// Certificate is the recipient certificate the key belongs to.
	Certificate *x509.Certificate
	// PrivateKey is a crypto.Decrypter (RSA) or a cms.KeyAgreer (EC; an
	// *ecdsa.PrivateKey also works). It is used for exactly one
	// private-key operation.
	PrivateKey crypto.PrivateKey
}

// OpenOptions configure Open and Verify.
type OpenOptions struct {
	// Roots are the trust anchors; the system roots when nil. An empty
	// pool trusts nothing.
	Roots *x509.CertPool
	// Intermediates are extra intermediate certificates for chain
	// building; the certificates in the message are always used too.
	Intermediates *x509.CertPool
	// Now is the time certificates are checked at; time.Now() when zero.
	Now time.Time
	// From is the address the signer must match; the message's From
	// header when empty.
	From string
	// FindKey returns the key for one of the recipients of an encrypted
	// layer. Returning ErrNoKey (or a nil key) reports decryption
	// "no-key". When FindKey is nil, encrypted layers are not decrypted
	// (Verify).
	FindKey func(ctx context.Context, recipients []cms.RecipientInfo) (*DecryptionKey, error)
	// SpoolDir is where authenticated (GCM) content waits, encrypted,
	// until its tag has been checked; the system's temporary directory
	// when empty.
	SpoolDir string
	// MaxLayers bounds the number of nested S/MIME layers; 8 when 0.
	MaxLayers int
	// MaxHeaderBytes bounds each header section; 1 MiB when 0.
	MaxHeaderBytes int
	// CheckRevocation, when not nil, checks the revocation of a signer's
	// verified chain (leaf first, ending with the trust anchor). It is
	// called once per signer whose signature is intact, not weak and
	// whose chain verified (outcome good or email-mismatch, judged at the
	// signer's trusted time or now), and never for expired, untrusted, bad
	// or weak signers. Its result is SignerResult.Revocation and can make
	// the outcome revoked (or untrusted, for an unknown status with
	// Fails). Nil means no revocation checking. It may be called from
	// several goroutines at once.
	CheckRevocation func(ctx context.Context, chain []*x509.Certificate) Revocation
	// FetchIssuers, when not nil, is asked for the issuers of cert when
	// a signer's chain cannot be built for want of an issuer
	// (x509.UnknownAuthorityError): first for the signer's certificate,
	// then, as fetched intermediates arrive, for up to three more levels.
	// What it returns is added to the intermediates and the chain is
	// built again; the trust anchors still come from Roots only. Nil means
	// no fetching. It may be called from several goroutines at once.
	FetchIssuers func(ctx context.Context, cert *x509.Certificate) []*x509.Certificate
}

// Open processes every S/MIME layer of the message read from msg, from the
// outside in: multipart/signed, application/pkcs7-mime with smime-type
// signed-data, enveloped-data, authEnveloped-data or certs-only, the older
// application/x-pkcs7-* names, and .p7m/.p7c name parameters without
// smime-type. It writes the innermost protected MIME entity to dst and
// reports each layer in Status.
//
// dst only ever receives the bytes that the innermost layer protected,
// exactly as they were protected: never the unprotected header fields
// outside it, never unprotected parts beside it. If the top-level entity
// is not an S/MIME layer (a plain message, or a multipart/mixed holding an
// S/MIME part next to plain parts), Open writes nothing and returns
// ErrNotSMIME: the caller must show such a message as unprotected.
//
// Content streams to dst before the signature that covers it has been
// checked (memory does not depend on the message's size): the caller must
// hold what dst received until Open returns, and discard it on error. GCM
// content is released only after its tag has been checked.
//
// Signature outcomes are reported in Status, not as errors. An error is
// returned only when processing could not go on (malformed, unsupported,
// no key, decryption failed, cancelled); Status is then still returned,
// with Status.Error set.
func Open(ctx context.Context, dst io.Writer, msg io.Reader, opts OpenOptions) (st *Status, err error) {
	o := &opener{ctx: ctx, opts: opts}
	defer func() {
		if p := recover(); p != nil {
			if !catchPanics {
				panic(p)
			}
			err = badf("internal error while reading the message: %v", p)
			// Stop every layer still running, and wait for them, before
			// their state is read.
			for _, pr := range o.pipes {
				pr.CloseWithError(err)
			}
			o.wg.Wait()
			st = o.status(err)
		}
	}()
	if o.opts.MaxLayers <= 0 {
		o.opts.MaxLayers = 8
	}
	if o.opts.MaxHeaderBytes <= 0 {
		o.opts.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	if o.opts.Now.IsZero() {
		o.opts.Now = time.Now()
	}
	err = o.run(ctxWriter{ctx, dst}, ctxReader{ctx, msg}, 0)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		err = classify(err)
	}
	return o.status(err), err
}

// Verify is Open without decryption: encrypted layers are reported, not
// opened.
func Verify(ctx context.Context, dst io.Writer, msg io.Reader, opts OpenOptions) (*Status, error) {
	opts.FindKey = nil
	return Open(ctx, dst, msg, opts)
}

// layerState is one layer while it is processed. Each is written only by
// the goroutine processing it, and read after that goroutine ended.
type layerState struct {
	Layer
	decryption string
	certs      []*x509.Certificate
	done       bool
	// inInner says that a multipart/signed layer is processing the
	// entity inside it (runDetached).
	inInner bool
}

// opener holds the state of one Open call.
type opener struct {
	ctx    context.Context
	opts   OpenOptions
	from   string
	layers []*layerState
	pipes  []*io.PipeReader
	wg     sync.WaitGroup
}

// catchPanics turns a panic while reading a message into ErrBadMessage, so
// that the daemon keeps serving. The fuzz tests turn it off to see panics.
var catchPanics = true

// entity kinds.
type entityKind int

const (
	kindPlain entityKind = iota
	kindDetached
	kindPKCS7
)

// kindOf says whether h starts an S/MIME layer.
func kindOf(h *header) (entityKind, string, map[string]string, error) {
	mt, params, err := h.contentType()
	if err != nil {
		return kindPlain, "", nil, err
	}
	switch mt {
	case "multipart/signed":
		switch strings.ToLower(params["protocol"]) {
		case "application/pkcs7-signature", "application/x-pkcs7-signature", "":
			return kindDetached, mt, params, nil
		}
		return kindPlain, mt, params, nil
	case "application/pkcs7-mime", "application/x-pkcs7-mime":
		return kindPKCS7, mt, params, nil
	}
	if !strings.HasPrefix(mt, "multipart/") && !strings.HasPrefix(mt, "text/") && !strings.HasPrefix(mt, "message/") {
		name := strings.ToLower(h.fileName(params))
		if strings.HasSuffix(name, ".p7m") || strings.HasSuffix(name, ".p7c") || strings.HasSuffix(name, ".p7z") {
			return kindPKCS7, mt, params, nil
		}
	}
	return kindPlain, mt, params, nil
}

// run processes the entity read from r at nesting depth: a pkcs7-mime
// layer is processed in a goroutine that writes its inner entity into a
// pipe, which run reads recursively; a multipart/signed layer reads its
// first part in run's own goroutine, handing it to run recursively as it
// goes (runDetached). The innermost entity goes to dst.
func (o *opener) run(dst io.Writer, r io.Reader, depth int) error {
	br := mimeReaders.get(r)
	h, err := readHeader(br, o.opts.MaxHeaderBytes)
	if err != nil {
		return err
	}
	if depth == 0 {
		if h.empty {
			return badf("empty message")
		}
		o.from = o.opts.From
		if o.from == "" {
			o.from = h.get("From")
		}
	}
	if h.empty {
		// A layer with no content inside (certs-only).
		return nil
	}
	kind, mt, params, err := kindOf(h)
	if err != nil {
		if depth == 0 {
			return err
		}
		// Protected content with a Content-Type we cannot parse is still
		// the content: the mail client decides how to show it.
		kind = kindPlain
	}
	if kind == kindPlain {
		if depth == 0 {
			if strings.HasPrefix(mt, "multipart/") && mt != "multipart/signed" {
				return errorf(ErrNotSMIME, "the message is %s: any S/MIME part inside it is beside unprotected parts and is not opened", mt)
			}
			if mt == "multipart/signed" {
				return errorf(ErrNotSMIME, "multipart/signed with protocol %q is not S/MIME", params["protocol"])
			}
			return errorf(ErrNotSMIME, "the message is %s, not signed or encrypted with S/MIME", mt)
		}
		if _, err := dst.Write(h.raw); err != nil {
			return err
		}
		if _, err := io.Copy(dst, br); err != nil {
			return err
		}
		mimeReaders.put(br)
		return nil
	}
	if len(o.layers) >= o.opts.MaxLayers {
		return errorf(ErrTooDeep, "more than %d nested S/MIME layers", o.opts.MaxLayers)
	}
	l := &layerState{}
	o.layers = append(o.layers, l)
	if kind == kindDetached {
		err := o.runDetached(dst, l, params, br, depth)
		if err == nil {
			mimeReaders.put(br)
		}
		return err
	}
	pr, pw := io.Pipe()
	o.pipes = append(o.pipes, pr)
	done := make(chan error, 1)
	o.wg.Add(1)
	go func() {
		var err error
		defer o.wg.Done()
		defer func() {
			if p := recover(); p != nil {
				if !catchPanics {
					panic(p)
				}
				err = badf("internal error while reading the message: %v", p)
			}
			if err != nil && l.Error == "" {
				l.Error = classify(err).Error()
			}
			l.done = err == nil
			pw.CloseWithError(err)
			done <- err
		}()
		err = o.pkcs7(l, h, params, br, pw)
	}()
	innerErr := o.run(dst, pr, depth+1)
	if innerErr != nil {
		pr.CloseWithError(innerErr)
	} else if _, err := io.Copy(io.Discard, pr); err != nil {
		innerErr = err
	}
	if layerErr := <-done; layerErr != nil {
		return layerErr
	}
	if innerErr == nil {
		// The layer's goroutine has ended, and with it every reader of br.
		mimeReaders.put(br)
	}
	return innerErr
}

// runDetached processes a multipart/signed layer, whose multipart body br
// holds, and the entity inside it (its first part, processed by run at
// depth+1 as it is read), without a goroutine or a pipe between them. It
// returns as run does with a goroutine: the layer's error when it failed,
// else the inner entity's.
func (o *opener) runDetached(dst io.Writer, l *layerState, params map[string]string, br *bufio.Reader, depth int) error {
	var innerErr error
	layerErr := o.detachedLayer(l, func() error {
		return o.detached(l, params, br, func(content io.Reader) error {
			innerErr = o.run(dst, content, depth+1)
			return innerErr
		})
	})
	if layerErr != nil {
		return layerErr
	}
	return innerErr
}

// detachedLayer runs layer, the processing of multipart/signed layer l,
// and records its end in l as the goroutine of a pkcs7-mime layer does. A
// panic in layer's own work becomes its error; one while the inner entity
// is processed (inInner) stops the layer as a pipe closed with that panic
// would, and goes on to Open, as when run panics.
func (o *opener) detachedLayer(l *layerState, layer func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			if !catchPanics {
				panic(p)
			}
			err = badf("internal error while reading the message: %v", p)
			if l.inInner {
				l.inInner = false
				if l.Error == "" {
					l.Error = classify(err).Error()
				}
				l.done = false
				panic(p)
			}
		}
		if err != nil && l.Error == "" {
			l.Error = classify(err).Error()
		}
		l.done = err == nil
	}()
	return layer()
}

// detached processes multipart/signed. inner processes the entity in the
// first part, reading it from content (which also feeds the digests); it
// returns the inner entity's error.
func (o *opener) detached(l *layerState, params map[string]string, br *bufio.Reader, inner func(content io.Reader) error) error {
	l.Type, l.Form = LayerSigned, FormDetached
	mr, err := newMultipartReader(br, params["boundary"])
	if err != nil {
		return err
	}
	if err := mr.Next(); err == io.EOF {
		return badf("multipart/signed has no parts")
	} else if err != nil {
		return err
	}
	hashes := cms.ParseMicalg(params["micalg"])
	if len(hashes) == 0 {
		hashes = []crypto.Hash{crypto.SHA1, crypto.SHA256, crypto.SHA384, crypto.SHA512}
	} else {
		hashes = append(hashes, crypto.SHA256)
	}
	dd := newDualDigest(hashes)
	content := io.TeeReader(mr, dd)
	l.inInner = true
	innerErr := inner(content)
	l.inInner = false
	if innerErr != nil {
		// The inner entity failed. Like a layer writing into a pipe whose
		// reader failed, the layer stops with that error, unless the
		// inner entity had read the whole part already.
		var one [1]byte
		if n, err := io.ReadAtLeast(content, one[:], 1); n > 0 {
			return innerErr
		} else if err != io.EOF {
			return err
		}
	} else if _, err := copyBuf(io.Discard, content); err != nil {
		// What the inner entity left unread still counts for the digests.
		return err
	}

	if err := mr.Next(); err == io.EOF {
		return badf("multipart/signed has no signature part")
	} else if err != nil {
		return err
	}
	sr := partReaders.get(mr)
	sh, err := readHeader(sr, o.opts.MaxHeaderBytes)
	if err != nil {
		return err
	}
	smt, _, err := sh.contentType()
	if err != nil {
		return err
	}
	if sh.empty || (smt != "application/pkcs7-signature" && smt != "application/x-pkcs7-signature") {
		return badf("the second part of multipart/signed is %s, not application/pkcs7-signature", smt)
	}
	dec, err := transferDecoder(sr, sh.transferEncoding(), "signature part")
	if err != nil {
		return err
	}
	// The BER decoder reads through a bufio.Reader: dec when it is one
	// (sr, for an identity encoding), else a recycled one of the size the
	// decoder would allocate.
	var bb *bufio.Reader
	sdIn := dec
	if _, ok := dec.(*bufio.Reader); !ok {
		bb = berReaders.get(dec)
		sdIn = bb
	}
	sdr, err := cms.NewSignedDataReader(sdIn)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, sdr.Content()); err != nil {
		return err
	}
	sd, embedded, err := sdr.Finish()
	if err != nil {
		return err
	}
	// Anything after the SignedData in the part (trailing whitespace).
	if _, err := io.Copy(io.Discard, dec); err != nil {
		return err
	}
	// The signature part is read: its buffers are free.
	if bb != nil {
		berReaders.put(bb)
	}
	if d, ok := dec.(*base64Reader); ok {
		d.release()
	}
	partReaders.put(sr)
	if err := mr.Next(); err == nil {
		return badf("multipart/signed has more than two parts")
	} else if err != io.EOF {
		return err
	}
	l.certs = sd.Certificates
	canon, raw := dd.sums()
	if len(sd.Signers) == 0 {
		l.Signers = []SignerResult{{Outcome: OutcomeBad, Reason: "the signature part holds no signer"}}
		return nil
	}
	for _, si := range sd.Signers {
		if !sd.Detached {
			e := embedded[si.Hash]
			if e == nil || (!equalBytes(e, canon[si.Hash]) && (raw == nil || !equalBytes(e, raw[si.Hash]))) {
				// Bad whatever else holds: no time-stamp or revocation
				// check is worth making.
				res := signerBase(si, sd)
				res.Outcome = OutcomeBad
				res.Reason = "the detached part and the content embedded in the signature differ (the message was re-wrapped)"
				l.Signers = append(l.Signers, res)
				continue
			}
		}
		l.Signers = append(l.Signers, o.evalSigner(o.ctx, si, sd, canon, raw))
	}
	return nil
}

// Content types recognised at the start of a pkcs7-mime body.
var (
	oidSignedData        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidEnvelopedData     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidAuthEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 23}
	oidCompressedData    = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 9}
)

// sniffContentType reads the contentType of the ContentInfo at the start
// of br without consuming it.
func sniffContentType(br *bufio.Reader) (asn1.ObjectIdentifier, error) {
	b, err := br.Peek(32)
	if err != nil && err != io.EOF {
		return nil, err
	}
	if len(b) == 0 {
		return nil, badf("application/pkcs7-mime with an empty body")
	}
	if len(b) < 4 || b[0] != 0x30 {
		return nil, badf("application/pkcs7-mime body is not a CMS ContentInfo")
	}
	i := 2
	switch l := b[1]; {
	case l == 0x80, l < 0x80:
	case l > 0x80 && l <= 0x84:
		i += int(l - 0x80)
	default:
		return nil, badf("application/pkcs7-mime body is not a CMS ContentInfo")
	}
	if i+2 > len(b) || b[i] != 0x06 || int(b[i+1]) > 0x7f || i+2+int(b[i+1]) > len(b) {
		return nil, badf("application/pkcs7-mime body is not a CMS ContentInfo")
	}
	var oid asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(b[i:i+2+int(b[i+1])], &oid); err != nil {
		return nil, badf("application/pkcs7-mime body: bad content type: %v", err)
	}
	return oid, nil
}

// pkcs7 processes application/pkcs7-mime: signed-data, certs-only,
// enveloped-data or authEnveloped-data, whatever the body holds.
func (o *opener) pkcs7(l *layerState, h *header, params map[string]string, br *bufio.Reader, pw *io.PipeWriter) (err error) {
	// What smime-type announces, until the content says what it is.
	switch strings.ToLower(params["smime-type"]) {
	case "signed-data":
		l.Type = LayerSigned
	case "enveloped-data":
		l.Type = LayerEnveloped
	case "authenveloped-data":
		l.Type = LayerAuthEnveloped
	case "certs-only":
		l.Type = LayerCertsOnly
	default:
		l.Type = "unknown"
	}
	cte := h.transferEncoding()
	dec, err := transferDecoder(br, cte, "application/pkcs7-mime body")
	if err != nil {
		return err
	}
	if cte == "base64" {
		// Decode base64 in its own goroutine, overlapping the cipher or
		// the hash.
		ar := newAsyncReader(dec)
		b64 := dec
		defer func() {
			ar.Close()
			// The goroutine reading b64 has ended.
			if d, ok := b64.(*base64Reader); ok && err == nil {
				d.release()
			}
		}()
		dec = ar
	}
	body := bodyReaders.get(dec)
	oid, err := sniffContentType(body)
	if err != nil {
		return err
	}
	switch {
	case oid.Equal(oidSignedData):
		err := o.opaque(l, body, pw)
		if err == nil {
			// The body was read to its end by this goroutine alone.
			bodyReaders.put(body)
		}
		return err
	case oid.Equal(oidEnvelopedData):
		l.Type = LayerEnveloped
		return o.enveloped(l, body, pw)
	case oid.Equal(oidAuthEnvelopedData):
		l.Type = LayerAuthEnveloped
		return o.enveloped(l, body, pw)
	case oid.Equal(oidCompressedData):
		l.Type = "compressed"
		return errorf(ErrUnsupported, "compressed-data (RFC 3274) is not supported")
	}
	l.Type = "unknown"
	return errorf(ErrUnsupported, "application/pkcs7-mime holding content type %v", oid)
}

// opaque processes signed-data (and certs-only) inside pkcs7-mime: the
// content streams to the next layer while it is hashed.
func (o *opener) opaque(l *layerState, body io.Reader, pw *io.PipeWriter) error {
	l.Type, l.Form = LayerSigned, FormOpaque
	sdr, err := cms.NewSignedDataReader(body)
	if err != nil {
		return err
	}
	if _, err := copyBuf(pw, sdr.Content()); err != nil {
		return err
	}
	pw.Close()
	sd, digests, err := sdr.Finish()
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	l.certs = sd.Certificates
	if sd.CertsOnly() {
		l.Type, l.Form = LayerCertsOnly, ""
		if !sd.Detached {
			return badf("certs-only message with content but no signer")
		}
		return nil
	}
	if sd.Detached {
		return badf("signed-data without content outside multipart/signed")
	}
	for _, si := range sd.Signers {
		l.Signers = append(l.Signers, o.evalSigner(o.ctx, si, sd, digests, nil))
	}
	return nil
}

// enveloped decrypts enveloped-data or authEnveloped-data.
func (o *opener) enveloped(l *layerState, body io.Reader, pw *io.PipeWriter) (err error) {
	l.decryption = DecryptionFail
	er, err := cms.NewEnvelopedReader(body)
	if err != nil {
		return err
	}
	l.Cipher = er.Cipher().String()
	recips := er.Recipients()
	if o.opts.FindKey == nil {
		l.decryption = DecryptionNoKey
		return errorf(ErrNoKey, "decryption was not requested; the message is encrypted for %s", describeRecipients(recips))
	}
	key, err := o.opts.FindKey(o.ctx, recips)
	switch {
	case errors.Is(err, ErrNoKey), err == nil && (key == nil || key.PrivateKey == nil):
		l.decryption = DecryptionNoKey
		if err != nil {
			return fmt.Errorf("%w (the message is encrypted for %s)", err, describeRecipients(recips))
		}
		return errorf(ErrNoKey, "no key for any recipient; the message is encrypted for %s", describeRecipients(recips))
	case err != nil:
		return err
	}
	rc, err := er.Decrypt(key.PrivateKey, key.Certificate, cms.DecryptOptions{SpoolDir: o.opts.SpoolDir})
	if err != nil {
		if errors.Is(err, cms.ErrNoRecipient) {
			l.decryption = DecryptionNoKey
		}
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(pw, rc); err != nil {
		return err
	}
	if err := rc.Close(); err != nil {
		return err
	}
	pw.Close()
	if _, err := io.Copy(io.Discard, body); err != nil {
		return err
	}
	l.decryption = DecryptionOK
	return nil
}

// describeRecipients names recipients for an error message.
func describeRecipients(rs []cms.RecipientInfo) string {
	if len(rs) == 0 {
		return "no recipient"
	}
	var names []string
	for i, r := range rs {
		if i == 4 {
			names = append(names, fmt.Sprintf("%d more", len(rs)-i))
			break
		}
		names = append(names, describeRecipient(r))
	}
	return strings.Join(names, ", ")
}

func describeRecipient(r cms.RecipientInfo) string {
	if r.IssuerAndSerial != nil {
		var ias struct {
			Issuer asn1.RawValue
			Serial asn1.RawValue
		}
		if _, err := asn1.Unmarshal(r.IssuerAndSerial, &ias); err == nil {
			var rdn pkix.RDNSequence
			if _, err := asn1.Unmarshal(ias.Issuer.FullBytes, &rdn); err == nil {
				var name pkix.Name
				name.FillFromRDNSequence(&rdn)
				return fmt.Sprintf("certificate %X issued by %s (%s)", ias.Serial.Bytes, name.String(), r.KeyAlgorithm)
			}
		}
	}
	if r.SubjectKeyID != nil {
		return fmt.Sprintf("key id %X (%s)", r.SubjectKeyID, r.KeyAlgorithm)
	}
	return r.Kind + " recipient"
}

// status builds the Status from the layers, after every goroutine ended.
func (o *opener) status(err error) *Status {
	st := &Status{
		Signature:  OutcomeNone,
		Revocation: RevocationNotChecked,
		Decryption: DecryptionNone,
		Layers:     []Layer{},
	}
	var innermostSigned *layerState
	for _, l := range o.layers {
		st.Layers = append(st.Layers, l.Layer)
		st.Certificates = append(st.Certificates, l.certs...)
		switch l.Type {
		case LayerSigned:
			st.Signed = true
			innermostSigned = l
		case LayerEnveloped, LayerAuthEnveloped:
			st.Encrypted = true
			d := l.decryption
			if d == "" {
				d = DecryptionFail
			}
			if st.Decryption == DecryptionNone || st.Decryption == DecryptionOK {
				st.Decryption = d
			}
		}
	}
	if l := innermostSigned; l != nil {
		switch {
		case len(l.Signers) == 0:
			// The layer stopped before its signature was checked.
			st.Signature = OutcomeBad
		default:
			pick := l.Signers[0]
			for _, s := range l.Signers {
				if s.Outcome == OutcomeGood {
					pick = s
					break
				}
			}
			st.Signature = pick.Outcome
			if r := pick.Revocation; r != nil && r.Status != "" {
				st.Revocation = r.Status
			}
			if pick.Certificate != nil {
				st.Signer = &SignerIdentity{Email: pick.Email, Subject: pick.Subject, SHA256: pick.SHA256}
			}
		}
	}
	if err != nil {
		st.Error = err.Error()
	}
	return st
}

// addressOf returns the bare address of a From header value, "" when it
// has none.
func addressOf(from string) string {
	from = strings.TrimSpace(from)
	if from == "" {
		return ""
	}
	if list, err := mail.ParseAddressList(from); err == nil && len(list) > 0 {
		return list[0].Address
	}
	if a, err := mail.ParseAddress(from); err == nil {
		return a.Address
	}
	// Not RFC 5322 (encoded words in odd places): take what is between
	// angle brackets, or the whole value if it looks like an address.
	if i := strings.LastIndexByte(from, '<'); i >= 0 {
		if j := strings.IndexByte(from[i:], '>'); j > 0 {
			return strings.TrimSpace(from[i+1 : i+j])
		}
	}
	if strings.Contains(from, "@") && !strings.ContainsAny(from, " \t") {
		return from
	}
	return ""
}

func equalBytes(a, b []byte) bool {
	return a != nil && b != nil && string(a) == string(b)
}
