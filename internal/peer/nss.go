package peer

import (
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/smimed/smimed/internal/testpki"
)

// NSS runs Thunderbird's CMS engine: the NSS command-line tools (cmsutil,
// certutil, pk12util) with LD_LIBRARY_PATH=/usr/lib/thunderbird, so that
// Thunderbird's own libnss3/libsmime3 do the work. One NSS value is one
// certificate database; calls on it are serialised (the tools share the
// database files), so parallel subtests may share it safely.
type NSS struct {
	cmsutil, certutil, pk12util string
	dir                         string // working files
	db                          string // "sql:" + database directory

	mu   sync.Mutex
	nick map[string]string // certificate DER -> nickname in the database
	n    int
}

// NewNSS creates an empty database with an empty password, trusts the PKI's
// root for e-mail (C,C,C) and imports its intermediate without trust.
func NewNSS(tb testing.TB, pki *testpki.PKI) *NSS {
	tb.Helper()
	needFile(tb, filepath.Join(thunderbirdLib, "libnss3.so"), "thunderbird")
	needFile(tb, filepath.Join(thunderbirdLib, "libsmime3.so"), "thunderbird")
	n := &NSS{
		cmsutil:  need(tb, "cmsutil", "libnss3-tools"),
		certutil: need(tb, "certutil", "libnss3-tools"),
		pk12util: need(tb, "pk12util", "libnss3-tools"),
		dir:      tb.TempDir(),
		nick:     map[string]string{},
	}
	dbDir := filepath.Join(n.dir, "db")
	if err := os.Mkdir(dbDir, 0o700); err != nil {
		tb.Fatalf("peer: %v", err)
	}
	n.db = "sql:" + dbDir
	n.mu.Lock()
	defer n.mu.Unlock()
	mustRun(tb, n.cmd(n.certutil, "-N", "-d", n.db, "--empty-password"))
	n.addCertLocked(tb, pki.Root.Cert, "root", "C,C,C")
	n.addCertLocked(tb, pki.Intermediate.Cert, "intermediate", ",,")
	return n
}

func (n *NSS) cmd(name string, args ...string) command {
	return command{name: name, args: args, env: []string{"LD_LIBRARY_PATH=" + thunderbirdLib}}
}

// Version returns the version of the NSS library the tools run with, read
// from Thunderbird's libnss3.so ("NSS 3.125.1").
func (n *NSS) Version(tb testing.TB) string {
	tb.Helper()
	lib := readFile(tb, filepath.Join(thunderbirdLib, "libnss3.so"))
	if m := nssVersion.Find(lib); m != nil {
		return string(m)
	}
	return "NSS (unknown version)"
}

var nssVersion = regexp.MustCompile(`NSS 3\.[0-9]+(\.[0-9]+)*`)

func (n *NSS) addCertLocked(tb testing.TB, c *x509.Certificate, nick, trust string) string {
	tb.Helper()
	if old, ok := n.nick[string(c.Raw)]; ok {
		return old
	}
	d := workDir(tb, n.dir)
	p := filepath.Join(d, "cert.pem")
	writeFile(tb, p, testpki.CertPEM(c))
	mustRun(tb, n.cmd(n.certutil, "-A", "-d", n.db, "-n", nick, "-t", trust, "-i", p))
	n.nick[string(c.Raw)] = nick
	return nick
}

// mustRunLocked runs c under the database lock and fails the test if it
// fails.
func (n *NSS) mustRunLocked(tb testing.TB, c command) {
	tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	mustRun(tb, c)
}

// AddCert imports a recipient's certificate without trust (",,") and
// returns its nickname. Certificates already in the database keep theirs.
func (n *NSS) AddCert(tb testing.TB, c *x509.Certificate) string {
	tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.n++
	return n.addCertLocked(tb, c, fmt.Sprintf("cert%d", n.n), ",,")
}

// AddIdentity imports an identity's key, certificate and chain from a
// PKCS#12 file (PBES2/AES, as Thunderbird exports them) and returns the
// nickname pk12util gave it.
func (n *NSS) AddIdentity(tb testing.TB, id *testpki.Identity) string {
	tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if nick, ok := n.nick[string(id.Cert.Raw)]; ok {
		return nick
	}
	before := n.listLocked(tb)
	d := workDir(tb, n.dir)
	p := filepath.Join(d, "id.p12")
	const pw = "peer-p12-password"
	writeFile(tb, p, id.PKCS12(tb, pw, false))
	mustRun(tb, n.cmd(n.pk12util, "-i", p, "-d", n.db, "-W", pw))
	var added []string
	for _, nick := range n.listLocked(tb) {
		if !contains(before, nick) {
			added = append(added, nick)
		}
	}
	// The chain's intermediate is already known; the new nickname is the
	// identity's own certificate.
	if len(added) != 1 {
		tb.Fatalf("peer: pk12util added nicknames %q, want exactly one", added)
	}
	n.nick[string(id.Cert.Raw)] = added[0]
	return added[0]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var trustColumn = regexp.MustCompile(`^(.*\S)\s+([a-zA-Z]*,[a-zA-Z]*,[a-zA-Z]*)\s*$`)

func (n *NSS) listLocked(tb testing.TB) []string {
	tb.Helper()
	out, _ := mustRun(tb, n.cmd(n.certutil, "-L", "-d", n.db))
	var nicks []string
	for _, line := range strings.Split(string(out), "\n") {
		if m := trustColumn.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line, " ") {
			nicks = append(nicks, m[1])
		}
	}
	return nicks
}

// NSSSign says how cmsutil signs.
type NSSSign struct {
	// Opaque makes application/pkcs7-mime; smime-type=signed-data instead
	// of multipart/signed.
	Opaque bool
	// Hash is cmsutil's -H: "SHA256" (default), "SHA384", "SHA512", "SHA1".
	Hash string
}

// Sign signs msg, a canonical MIME entity, as Thunderbird does: signing
// time, SMIMECapabilities and SMIMEEncryptionKeyPreference attributes
// (cmsutil -G -P -Y), certificate chain included. The identity is imported
// first if needed. The CMS is wrapped into an S/MIME message here.
func (n *NSS) Sign(tb testing.TB, id *testpki.Identity, msg []byte, opt NSSSign) []byte {
	tb.Helper()
	nick := n.AddIdentity(tb, id)
	hash := opt.Hash
	if hash == "" {
		hash = "SHA256"
	}
	d := workDir(tb, n.dir)
	in, out := filepath.Join(d, "in"), filepath.Join(d, "out.p7")
	writeFile(tb, in, msg)
	args := []string{"-S", "-N", nick, "-H", hash, "-G", "-P", "-Y", nick, "-d", n.db, "-i", in, "-o", out}
	if !opt.Opaque {
		args = append(args, "-T")
	}
	n.mustRunLocked(tb, n.cmd(n.cmsutil, args...))
	der := readFile(tb, out)
	if opt.Opaque {
		return WrapPKCS7MIME(der, SignedData)
	}
	return WrapSigned(msg, der, Micalg(hash))
}

// Decode is cmsutil's report on one CMS message.
type Decode struct {
	// Header is the -h output: levels, types, signers and their status.
	Header string
	// Types lists the content types from the outside in, e.g.
	// ["envelopedData", "signedData", "data"].
	Types []string
	// Signers lists each signer's status, e.g. "GoodSignature",
	// "DigestMismatch", "SigningCertNotTrusted".
	Signers []string
	// Content is the decoded content (nil if cmsutil could not output it,
	// for example because a signature was bad).
	Content []byte
	// Log holds the command lines and stderr.
	Log string
}

var (
	levelType    = regexp.MustCompile(`level=([0-9.]+); type=([A-Za-z]+)`)
	signerStatus = regexp.MustCompile(`signer[0-9]+\.status=([A-Za-z]+)`)
)

// DecodeCMS runs `cmsutil -D` on a raw CMS message, with detached content if
// not nil. It runs cmsutil twice: once with -h (report, no content), because
// cmsutil exits 0 on a bad digest only in that mode and otherwise mixes the
// report into the content, and once for the content. An error means cmsutil
// could not decode the message at all.
func (n *NSS) DecodeCMS(tb testing.TB, der, detached []byte) (*Decode, error) {
	tb.Helper()
	d := workDir(tb, n.dir)
	in, out := filepath.Join(d, "in.p7"), filepath.Join(d, "out")
	writeFile(tb, in, der)
	var extra []string
	if detached != nil {
		c := filepath.Join(d, "content")
		writeFile(tb, c, detached)
		extra = []string{"-c", c}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	report := n.cmd(n.cmsutil, append([]string{"-D", "-i", in, "-d", n.db, "-h", "9", "-n"}, extra...)...)
	stdout, stderr, err := run(tb, report)
	res := &Decode{Header: string(stdout), Log: report.String() + "\n" + string(stdout) + string(stderr)}
	if err != nil {
		res.Log = err.Error()
		return res, err
	}
	for _, m := range levelType.FindAllStringSubmatch(res.Header, -1) {
		res.Types = append(res.Types, m[2])
	}
	for _, m := range signerStatus.FindAllStringSubmatch(res.Header, -1) {
		res.Signers = append(res.Signers, m[1])
	}
	content := n.cmd(n.cmsutil, append([]string{"-D", "-i", in, "-d", n.db, "-o", out}, extra...)...)
	_, stderr, err = run(tb, content)
	if err != nil {
		res.Log += "\n" + err.Error()
	} else {
		res.Log += "\n" + content.String() + "\n" + string(stderr)
		res.Content = readFile(tb, out)
	}
	return res, nil
}

// GoodSignature reports whether cmsutil found at least one signer and every
// signer's status is GoodSignature.
func (r *Decode) GoodSignature() bool {
	if len(r.Signers) == 0 {
		return false
	}
	for _, s := range r.Signers {
		if s != "GoodSignature" {
			return false
		}
	}
	return true
}

// Verify checks a signed S/MIME message, either form, the way Thunderbird
// does: the first part of a multipart/signed message, canonicalised to CRLF,
// is the detached content.
func (n *NSS) Verify(tb testing.TB, msg []byte) Verdict {
	tb.Helper()
	m, err := Parse(msg)
	if err != nil {
		return Verdict{Status: "error", Log: err.Error()}
	}
	var detached []byte
	if m.MediaType == "multipart/signed" {
		detached = Canonical(m.Content)
	}
	r, err := n.DecodeCMS(tb, m.CMS, detached)
	if err != nil {
		return Verdict{Status: "error", Log: r.Log}
	}
	v := Verdict{Good: r.GoodSignature(), Status: strings.Join(r.Signers, ","), Log: r.Log}
	if !contains(r.Types, "signedData") {
		v.Good = false
		v.Status = "not signed: " + strings.Join(r.Types, ",")
	}
	if detached != nil {
		v.Content = detached
	} else {
		v.Content = r.Content
	}
	return v
}

// Encrypt envelopes msg, a canonical MIME entity, for the given
// certificates (imported into the database as needed) with `cmsutil -E`.
// NSS chooses the content cipher and the key transport or agreement itself.
func (n *NSS) Encrypt(tb testing.TB, msg []byte, recipients ...*x509.Certificate) []byte {
	tb.Helper()
	if len(recipients) == 0 {
		tb.Fatal("peer: NSS.Encrypt without recipients")
	}
	var nicks []string
	for _, c := range recipients {
		nicks = append(nicks, n.AddCert(tb, c))
	}
	d := workDir(tb, n.dir)
	in, out := filepath.Join(d, "in"), filepath.Join(d, "out.p7m")
	writeFile(tb, in, msg)
	n.mustRunLocked(tb, n.cmd(n.cmsutil, "-E", "-r", strings.Join(nicks, ","), "-d", n.db, "-i", in, "-o", out))
	return WrapPKCS7MIME(readFile(tb, out), EnvelopedData)
}

// Decrypt opens an enveloped S/MIME message with whatever key of the
// database it is addressed to (identities are imported with AddIdentity),
// and returns the content exactly as decrypted.
func (n *NSS) Decrypt(tb testing.TB, msg []byte) ([]byte, error) {
	tb.Helper()
	m, err := Parse(msg)
	if err != nil {
		return nil, err
	}
	if m.MediaType == "multipart/signed" {
		return nil, fmt.Errorf("peer: NSS.Decrypt: message is multipart/signed, not encrypted")
	}
	d := workDir(tb, n.dir)
	in, out := filepath.Join(d, "in.p7m"), filepath.Join(d, "out")
	writeFile(tb, in, m.CMS)
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, _, err := run(tb, n.cmd(n.cmsutil, "-D", "-i", in, "-d", n.db, "-o", out)); err != nil {
		return nil, err
	}
	return readFile(tb, out), nil
}
