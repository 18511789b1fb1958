package certbook

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Scope says what a trust anchor vouches for. It is a set: an anchor may
// have both scopes.
type Scope uint8

// The scopes.
const (
	// ScopeSigning: the anchor vouches for signers (verifying signatures).
	ScopeSigning Scope = 1 << iota
	// ScopeEncryption: the anchor vouches for recipients' certificates
	// (those found in a directory, before encrypting to them).
	ScopeEncryption
	// ScopeAll is both scopes.
	ScopeAll = ScopeSigning | ScopeEncryption
)

// Strings returns the names of the scopes in s, "signing" then
// "encryption" (for JSON); none for the empty scope.
func (s Scope) Strings() []string {
	out := []string{}
	if s&ScopeSigning != 0 {
		out = append(out, "signing")
	}
	if s&ScopeEncryption != 0 {
		out = append(out, "encryption")
	}
	return out
}

// String returns the names of the scopes in s joined by "+", or "none".
func (s Scope) String() string {
	if s&ScopeAll == 0 {
		return "none"
	}
	return strings.Join(s.Strings(), "+")
}

// SourcePolicy is the source of an anchor the machine's policy gives: a
// file in the machine directory or one the configuration names. The user's
// own anchors have the source SourceUser.
const SourcePolicy = "policy"

// TrustSources says where trust anchors come from. The daemon fills it
// from the [trust] configuration.
type TrustSources struct {
	// System adds the operating system's roots (Go's x509.SystemCertPool;
	// Debian: /etc/ssl/certs) to the pools, for both scopes.
	System bool
	// User counts the user's own anchors (<book dir>/trust, AddAnchors),
	// for both scopes.
	User bool
	// MachineDir is the machine's anchor directory (/etc/smimed/trust):
	// certificate files in it are anchors for both scopes, those in its
	// signing/ and encryption/ subdirectories for that scope only. A
	// missing directory is no anchors, not an error. Empty: none.
	MachineDir string
	// Anchors, SigningAnchors and EncryptionAnchors are absolute paths of
	// certificate files or of directories of them: anchors for both
	// scopes, for ScopeSigning only and for ScopeEncryption only. A named
	// path that is missing is reported (a *CorruptError).
	Anchors           []string
	SigningAnchors    []string
	EncryptionAnchors []string
}

// Anchor is one trust anchor and where it came from.
type Anchor struct {
	// Certificate is the anchor. It must not be modified.
	Certificate *x509.Certificate
	// Scope is what it vouches for: the union of its sources' scopes when
	// the same certificate comes from several places.
	Scope Scope
	// Sources are SourceUser and/or SourcePolicy, in that order. The
	// system's roots are not listed as anchors.
	Sources []string
}

// Fingerprint returns the hex SHA-256 of the anchor's certificate.
func (a Anchor) Fingerprint() string { return Fingerprint(a.Certificate) }

// maxAnchorFile bounds the size of one policy anchor file (the whole
// Mozilla root store as PEM is about a quarter of it).
const maxAnchorFile = 1 << 20

// anchorExts are the names of the certificate files read from a
// directory; other files (README, .dotfiles, hash symlinks) are skipped.
var anchorExts = []string{".pem", ".crt", ".cer", ".der"}

// TrustAnchors returns the user's anchors (when src.User) and the policy's
// (src.MachineDir and the configured paths), merged by fingerprint: one
// Anchor per certificate with the union of the scopes and the sources.
// The system's roots are not listed. The order is stable: user anchors
// first, then the machine directory, then the configured paths in order.
// Unreadable files are reported in the error (one *CorruptError each,
// errors.Is ErrCorrupt) beside the readable anchors; any other error
// means no result. The list is cached as for TrustPool.
func (b *Book) TrustAnchors(ctx context.Context, src TrustSources) ([]Anchor, error) {
	t := &b.trust
	t.mu.Lock()
	defer t.mu.Unlock()
	set, err := b.anchorSetLocked(ctx, src)
	if err != nil {
		return nil, err
	}
	out := make([]Anchor, len(set.anchors))
	for i, a := range set.anchors {
		a.Sources = slices.Clone(a.Sources)
		out[i] = a
	}
	return out, set.err
}

// loadAnchors reads the anchors src names. Stamps are taken before the
// things they describe are read, so a change made while reading is seen
// on the next call.
func (b *Book) loadAnchors(ctx context.Context, src TrustSources) (*anchorSet, error) {
	r := &anchorReader{ctx: ctx, index: map[string]int{}}
	if src.User {
		st, err := stampOf(b.trustDir())
		if err != nil {
			return nil, fmt.Errorf("certbook: %w", err)
		}
		r.stamps = append(r.stamps, st)
		certs, err := b.Anchors(ctx)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		if err != nil {
			r.errs = append(r.errs, err)
		}
		for _, c := range certs {
			r.add(c, ScopeAll, SourceUser)
		}
	}
	if src.MachineDir != "" {
		if r.readDir(src.MachineDir, ScopeAll, true) {
			r.readDir(filepath.Join(src.MachineDir, "signing"), ScopeSigning, true)
			r.readDir(filepath.Join(src.MachineDir, "encryption"), ScopeEncryption, true)
		}
	}
	for _, l := range []struct {
		paths []string
		scope Scope
	}{{src.Anchors, ScopeAll}, {src.SigningAnchors, ScopeSigning}, {src.EncryptionAnchors, ScopeEncryption}} {
		for _, p := range l.paths {
			r.readPath(p, l.scope)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return &anchorSet{stamps: r.stamps, anchors: r.anchors, err: errors.Join(r.errs...)}, nil
}

// anchorReader collects anchors, the problems met and the stamps of what
// it read.
type anchorReader struct {
	ctx     context.Context
	anchors []Anchor
	index   map[string]int // fingerprint → position in anchors
	errs    []error
	stamps  []stamp
}

func (r *anchorReader) add(c *x509.Certificate, scope Scope, source string) {
	fp := Fingerprint(c)
	if i, ok := r.index[fp]; ok {
		a := &r.anchors[i]
		a.Scope |= scope
		if !slices.Contains(a.Sources, source) {
			a.Sources = append(a.Sources, source)
		}
		return
	}
	r.index[fp] = len(r.anchors)
	r.anchors = append(r.anchors, Anchor{Certificate: c, Scope: scope, Sources: []string{source}})
}

func (r *anchorReader) corrupt(path string, err error) {
	r.errs = append(r.errs, &CorruptError{Path: path, Err: err})
}

// readPath reads a configured path: a file of any name, or a directory.
func (r *anchorReader) readPath(path string, scope Scope) {
	if r.ctx.Err() != nil {
		return
	}
	if !filepath.IsAbs(path) {
		r.corrupt(path, errors.New("not an absolute path"))
		return
	}
	st, err := stampOf(path)
	r.stamps = append(r.stamps, st)
	switch {
	case err != nil:
		r.corrupt(path, err)
	case st.mode.IsDir():
		r.readDir(path, scope, false)
	default:
		r.readFile(path, st, scope)
	}
}

// readDir reads the certificate files directly in dir (not its
// subdirectories) and reports whether dir is a directory. A missing dir
// is fine when missingOK.
func (r *anchorReader) readDir(dir string, scope Scope, missingOK bool) bool {
	if r.ctx.Err() != nil {
		return false
	}
	st, err := stampOf(dir)
	r.stamps = append(r.stamps, st)
	if err != nil {
		if !(missingOK && errors.Is(err, fs.ErrNotExist)) {
			r.corrupt(dir, err)
		}
		return false
	}
	if !st.mode.IsDir() {
		r.corrupt(dir, errors.New("not a directory"))
		return false
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		r.corrupt(dir, err)
		return true
	}
	for _, de := range des {
		if r.ctx.Err() != nil {
			return true
		}
		name := de.Name()
		if strings.HasPrefix(name, ".") || !slices.Contains(anchorExts, strings.ToLower(filepath.Ext(name))) {
			continue
		}
		path := filepath.Join(dir, name)
		st, err := stampOf(path) // follows a symbolic link; a loop is an error (ELOOP)
		r.stamps = append(r.stamps, st)
		switch {
		case err != nil:
			r.corrupt(path, err)
		case st.mode.IsDir():
			// a directory named like a certificate: not ours to descend
		default:
			r.readFile(path, st, scope)
		}
	}
	return true
}

// readFile reads one certificate file whose stamp is st.
func (r *anchorReader) readFile(path string, st stamp, scope Scope) {
	if !st.mode.IsRegular() {
		r.corrupt(path, errors.New("not a regular file"))
		return
	}
	if st.size > maxAnchorFile {
		r.corrupt(path, fmt.Errorf("larger than %d bytes", maxAnchorFile))
		return
	}
	data, err := readLimited(path, maxAnchorFile)
	if err != nil {
		r.corrupt(path, err)
		return
	}
	certs, err := parseCertificates(data)
	if err != nil {
		r.corrupt(path, err)
	}
	for _, c := range certs {
		r.add(c, scope, SourcePolicy)
	}
}

// readLimited reads path, failing when it holds more than limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return data, nil
}

// parseCertificates reads PEM (every CERTIFICATE block; other blocks are
// ignored) or one DER certificate. With PEM, the certificates that parse
// are returned beside an error naming those that do not.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		c, err := x509.ParseCertificate(data)
		if err != nil {
			return nil, fmt.Errorf("neither PEM nor a DER certificate: %w", err)
		}
		return []*x509.Certificate{c}, nil
	}
	var certs []*x509.Certificate
	var errs []error
	n := 0
	for rest := data; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		n++
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			errs = append(errs, fmt.Errorf("certificate %d: %w", n, err))
			continue
		}
		certs = append(certs, c)
	}
	if n == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return certs, errors.Join(errs...)
}

// stamp is what a path looked like when it was read: a change to any
// stamp of a cached set rebuilds it.
type stamp struct {
	path string
	mode fs.FileMode
	size int64
	mod  time.Time
	err  string // the stat error ("" when none): a missing path is a state too
}

// stampOf stats path (following symbolic links). The stamp is valid (and
// worth keeping) even when err is not nil.
func stampOf(path string) (stamp, error) {
	st, err := os.Stat(path)
	if err != nil {
		return stamp{path: path, err: err.Error()}, err
	}
	return stamp{path: path, mode: st.Mode(), size: st.Size(), mod: st.ModTime()}, nil
}

// unchanged reports whether path still looks as s says.
func (s stamp) unchanged() bool {
	now, _ := stampOf(s.path)
	return now.mode == s.mode && now.size == s.size && now.mod.Equal(s.mod) && now.err == s.err
}
