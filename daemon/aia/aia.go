// Package aia fetches the issuing CA certificate of a certificate from the
// caIssuers URLs of its Authority Information Access extension (RFC 5280
// section 4.2.2.1), so that chains whose intermediate certificates came
// neither with the message nor from the address book can still be built.
//
// # Privacy
//
// The URLs come from a certificate that has not been verified yet: often
// from a message just received. Fetching one tells the URL's owner — the
// CA, or whoever made the certificate, possibly the sender — that
// the certificate is being looked at, from which address and when. This
// package fetches whenever it is asked to; the daemon decides when to ask
// (the configuration switch trust.fetch_issuers: by default while
// composing or on request, never while a message is read). The same
// caution applies to where the URLs point: a certificate may name a host
// on the user's own network, which then receives a GET request (only
// certificates are ever read from the answer).
//
// # Design
//
// A [Fetcher] is built once by the daemon and shared by all goroutines. It
// holds no package-level state: the HTTP client, the clock, the limits and
// the optional on-disk cache are fields of the Fetcher.
//
// [Fetcher.Issuers] tries the certificate's caIssuers URLs in order and
// stops at the first whose content yields the certificate's issuer: a
// certificate whose subject is the certificate's issuer name and whose key
// verifies the certificate's signature (x509.Certificate.CheckSignatureFrom,
// which also requires a CA certificate allowed to sign certificates). A URL
// that fails (unreachable, an HTTP error, a body that is too large or not
// certificates, certificates that did not sign this one) moves on to the
// next. Certificates that did not sign the certificate are never returned.
// Go does not verify SHA-1 signatures, so a certificate signed with SHA-1
// never finds its issuer here (its chain would not verify either).
//
// URLs: http:// and https:// are read with GET (through Fetcher.HTTPClient),
// ldap:// and ldaps:// (RFC 4516, e.g.
// ldap://host/cn=CA,o=X?cACertificate;binary) with an anonymous base-object
// search for the attribute the URL names (cACertificate;binary and
// cACertificate when it names none) through github.com/go-ldap/ldap/v3;
// ldaps:// verifies the server against the system's roots. Other schemes
// are skipped with [ErrUnsupported]. crossCertificatePair values are not
// interpreted.
//
// Content: a DER certificate (application/pkix-cert, RFC 2585), PEM
// certificates, or a PKCS #7 / CMS SignedData — normally certs-only, the
// .p7c of application/pkcs7-mime — in DER, BER or PEM ("PKCS7", "CMS"),
// read with smime/cms. The Content-Type header is not trusted either way.
// A response is limited to Fetcher.MaxSize bytes (1 MiB by default) and at
// most 256 certificates; anything beyond fails with [ErrTooLarge] before
// more is read. (An LDAP answer is read whole by the LDAP library before
// its size can be checked; its connection still ends with the time budget.)
//
// Time: one Issuers call never takes longer than Fetcher.Timeout (5 s by
// default) and ends when the caller's context does. When several URLs are
// left to try, each gets an equal share of the time remaining, so that a
// server that hangs leaves time for the next.
//
// Caching, keyed by URL: what a URL served (its certificates) is kept in
// memory for Fetcher.TTL (24 h by default) and, with Fetcher.CacheDir set,
// on disk as well — one PEM file per URL with the time it was fetched,
// written to a temporary file, synced and renamed, so a reader sees the old
// or the new file, never half of one — and a new Fetcher (a daemon restart)
// uses it while it is fresh. A cached answer is checked against each
// certificate anew (subject and signature), so a certificate naming a URL
// that served some other CA's certificate gets nothing from the cache. A
// disk file that cannot be read back is ignored, removed, and replaced by
// the next successful fetch. Failures are remembered in memory only, for
// Fetcher.NegativeTTL (5 min by default), so that certificates naming a
// dead or hostile server do not hammer it; a fetch cut short by the
// caller's own context is not remembered. When the cached certificates of a
// URL do not include a certificate's issuer (the CA may have added a new
// intermediate at the same URL), the URL is fetched again, at most once per
// NegativeTTL. No network access happens under the Fetcher's lock; calls
// that miss the cache for the same URL at the same time share one fetch. The memory cache
// holds at most 1024 URLs and the disk cache at most 1024 files.
package aia

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// Defaults used when the corresponding Fetcher field is zero.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultMaxSize     = 1 << 20
	DefaultTTL         = 24 * time.Hour
	DefaultNegativeTTL = 5 * time.Minute
)

// Bounds against hostile servers and certificates.
const (
	maxCerts       = 256  // certificates taken from one response
	maxMemEntries  = 1024 // URLs in the memory cache
	maxDiskEntries = 1024 // files in the disk cache
	maxRedirects   = 5
)

// Errors. Issuers wraps them, with the URL, in a *URLError; errors.Is finds
// them through the error Issuers returns.
var (
	// ErrNoURL: the certificate names no caIssuers URL.
	ErrNoURL = errors.New("aia: the certificate names no caIssuers URL")
	// ErrNotFound: no caIssuers URL yielded the certificate's issuer. The
	// error also wraps each URL's *URLError.
	ErrNotFound = errors.New("aia: the certificate's issuer was not found at its caIssuers URLs")
	// ErrUnsupported: the URL's scheme is not http, https, ldap or ldaps,
	// or the URL is not usable (no host, a critical LDAP extension).
	ErrUnsupported = errors.New("unsupported URL")
	// ErrTooLarge: the response is larger than Fetcher.MaxSize or holds
	// more certificates than the package accepts.
	ErrTooLarge = errors.New("response too large")
	// ErrMalformed: the response is neither a certificate, PEM
	// certificates nor a PKCS #7 bundle of certificates.
	ErrMalformed = errors.New("not a certificate or a PKCS #7 certificate bundle")
	// ErrNotIssuer: the URL served certificates, but none of them issued
	// the certificate (wrong subject, or its key does not verify the
	// certificate's signature).
	ErrNotIssuer = errors.New("no certificate served is the certificate's issuer")
)

// URLError is the failure of one caIssuers URL.
type URLError struct {
	// URL is the caIssuers URL as the certificate gives it.
	URL string
	// Err is why it failed: one of the package's errors, an HTTP or LDAP
	// failure, or the context's error when time ran out.
	Err error
	// Cached reports that the answer came from the cache: the failure was
	// remembered from an earlier fetch, or the certificates remembered
	// from it did not include the issuer. No network access was made.
	Cached bool
}

// Error implements error.
func (e *URLError) Error() string {
	s := e.URL + ": " + e.Err.Error()
	if e.Cached {
		s += " (cached)"
	}
	return s
}

// Unwrap returns the cause.
func (e *URLError) Unwrap() error { return e.Err }

// notFoundError is ErrNotFound with each URL's failure.
type notFoundError struct{ urls []error }

func (e *notFoundError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNotFound.Error())
	for i, u := range e.urls {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(u.Error())
	}
	return b.String()
}

func (e *notFoundError) Unwrap() []error { return append([]error{ErrNotFound}, e.urls...) }

// Fetcher fetches issuer certificates named by caIssuers URLs. Its exported
// fields are configuration and must be set before the first call; the zero
// value is usable (5 s budget, 1 MiB responses, memory cache only). A
// Fetcher is safe for concurrent use and must not be copied after first
// use.
type Fetcher struct {
	// HTTPClient is used for http(s) URLs; nil means a private client
	// with default settings that follows at most 5 redirects (deadlines
	// come from the context).
	HTTPClient *http.Client
	// Timeout bounds a whole Issuers call; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxSize is the largest response accepted, in bytes; zero means
	// DefaultMaxSize.
	MaxSize int64
	// CacheDir, when set, keeps what URLs served on disk as well (created
	// 0700 as needed), so that it survives restarts.
	CacheDir string
	// TTL is how long what a URL served is used without asking again;
	// zero means DefaultTTL.
	TTL time.Duration
	// NegativeTTL is how long a failed URL is not asked again; zero means
	// DefaultNegativeTTL.
	NegativeTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu     sync.Mutex
	cache  map[string]*entry
	client *http.Client
	// flights are the network fetches under way, by URL.
	flights map[string]*flight
}

// entry is what the cache knows about one URL: the certificates it served
// or why it failed.
type entry struct {
	certs   []*x509.Certificate // nil for a failure
	err     error               // the failure; nil when certs were served
	checked time.Time           // when certs were fetched, or the last failed attempt
	until   time.Time           // the entry is forgotten then
}

func (f *Fetcher) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Fetcher) httpClient() *http.Client {
	if f.HTTPClient != nil {
		return f.HTTPClient
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.client == nil {
		f.client = &http.Client{CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			return nil
		}}
	}
	return f.client
}

// Issuers returns the certificates found at cert's caIssuers URLs that
// issued cert: their subject is cert's issuer name and cert's signature
// verifies with their key. It tries the URLs in order and stops at the
// first that yields at least one; several are returned when that URL
// served several (cross-certificates with the same name and key). It never
// returns a certificate that did not sign cert, and says nothing about
// whether the issuer is trusted: the caller still builds and verifies the
// chain. The certificates returned may be shared with other callers and
// must not be modified.
//
// The error is ErrNoURL when cert names no caIssuers URL, else, when no URL
// yielded the issuer, one wrapping ErrNotFound and each URL's *URLError
// (and so the context's error when time ran out). Issuers returns within
// Fetcher.Timeout or when ctx ends, whichever is first.
func (f *Fetcher) Issuers(ctx context.Context, cert *x509.Certificate) ([]*x509.Certificate, error) {
	if cert == nil {
		return nil, errors.New("aia: no certificate")
	}
	if len(cert.IssuingCertificateURL) == 0 {
		return nil, ErrNoURL
	}
	callerCtx := ctx
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(f.Timeout, DefaultTimeout))
	defer cancel()

	// Each URL once, in order; the time budget is shared among those that
	// may need the network.
	var (
		urls []string
		errs []error
		left int
	)
	for _, u := range cert.IssuingCertificateURL {
		if !slices.Contains(urls, u) {
			urls = append(urls, u)
		}
	}
	parsed := make([]*url.URL, len(urls))
	bad := make([]error, len(urls))
	for i, u := range urls {
		if parsed[i], bad[i] = parseURL(u); bad[i] == nil {
			left++
		}
	}
	for i, u := range urls {
		p := parsed[i]
		if bad[i] != nil {
			errs = append(errs, &URLError{URL: u, Err: bad[i]})
			continue
		}
		if err := ctx.Err(); err != nil {
			errs = append(errs, &URLError{URL: u, Err: fmt.Errorf("not tried: %w", err)})
			continue
		}
		actx, acancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && left > 1 {
			actx, acancel = context.WithTimeout(ctx, time.Until(dl)/time.Duration(left))
		}
		left--
		got, uerr := f.fromURL(actx, callerCtx, u, p, cert)
		acancel()
		if uerr == nil {
			return got, nil
		}
		errs = append(errs, uerr)
	}
	return nil, &notFoundError{urls: errs}
}

// fromURL returns cert's issuers from what u served, from the cache or the
// network.
func (f *Fetcher) fromURL(ctx, callerCtx context.Context, key string, u *url.URL, cert *x509.Certificate) ([]*x509.Certificate, *URLError) {
	now := f.now()
	if e := f.lookup(key, now); e != nil {
		if e.err != nil {
			return nil, &URLError{URL: key, Err: e.err, Cached: true}
		}
		if got := issuersOf(cert, e.certs); len(got) > 0 {
			return got, nil
		}
		if now.Sub(e.checked) < cmp.Or(f.NegativeTTL, DefaultNegativeTTL) {
			return nil, &URLError{URL: key, Err: ErrNotIssuer, Cached: true}
		}
		// Fetched long enough ago: the URL may serve a new issuer now.
	}
	certs, err := f.fetchShared(ctx, key, u, now)
	if err != nil {
		if callerCtx.Err() == nil {
			// A failure of the server (including not answering within
			// our budget), not the caller going away: remember it.
			f.failed(key, err, now)
		}
		return nil, &URLError{URL: key, Err: err}
	}
	if got := issuersOf(cert, certs); len(got) > 0 {
		return got, nil
	}
	return nil, &URLError{URL: key, Err: ErrNotIssuer}
}

// flight is one network fetch of a URL that callers share.
type flight struct {
	done    chan struct{} // closed when certs and err are set
	certs   []*x509.Certificate
	err     error
	waiters int // guarded by Fetcher.mu
	cancel  context.CancelFunc
}

// fetchShared fetches u once for every caller that misses the cache for it
// at the same time, and caches what it served. The fetch has the Fetcher's
// own time budget; each caller stops waiting when its ctx ends, and when
// the last one has, the fetch is cancelled.
func (f *Fetcher) fetchShared(ctx context.Context, key string, u *url.URL, now time.Time) ([]*x509.Certificate, error) {
	f.mu.Lock()
	fl := f.flights[key]
	if fl == nil {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmp.Or(f.Timeout, DefaultTimeout))
		fl = &flight{done: make(chan struct{}), cancel: cancel}
		if f.flights == nil {
			f.flights = make(map[string]*flight)
		}
		f.flights[key] = fl
		go f.fly(fctx, key, u, now, fl)
	}
	fl.waiters++
	f.mu.Unlock()

	select {
	case <-fl.done:
		f.leave(key, fl)
		return fl.certs, fl.err
	case <-ctx.Done():
		f.leave(key, fl)
		return nil, ctx.Err()
	}
}

// fly runs the fetch of a flight.
func (f *Fetcher) fly(ctx context.Context, key string, u *url.URL, now time.Time, fl *flight) {
	defer fl.cancel()
	certs, err := f.fetch(ctx, u)
	if err == nil {
		f.store(key, certs, now)
	}
	f.mu.Lock()
	if f.flights[key] == fl {
		delete(f.flights, key)
	}
	f.mu.Unlock()
	fl.certs, fl.err = certs, err
	close(fl.done)
}

// leave counts a caller out of a flight; the last one cancels it, and a
// later caller starts a new one.
func (f *Fetcher) leave(key string, fl *flight) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fl.waiters--
	if fl.waiters == 0 {
		fl.cancel()
		if f.flights[key] == fl {
			delete(f.flights, key)
		}
	}
}

// issuersOf returns the certificates of certs that issued cert, without
// duplicates.
func issuersOf(cert *x509.Certificate, certs []*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	for _, c := range certs {
		if !bytes.Equal(c.RawSubject, cert.RawIssuer) || c.Equal(cert) {
			continue
		}
		dup := false
		for _, o := range out {
			if o.Equal(c) {
				dup = true
			}
		}
		if dup || cert.CheckSignatureFrom(c) != nil {
			continue
		}
		out = append(out, c)
	}
	return out
}

// ---- cache ----

// lookup returns the fresh entry for key from memory, else from disk, or
// nil.
func (f *Fetcher) lookup(key string, now time.Time) *entry {
	f.mu.Lock()
	e, ok := f.cache[key]
	if ok && !now.Before(e.until) {
		delete(f.cache, key)
		ok = false
	}
	f.mu.Unlock()
	if ok {
		return e
	}
	if f.CacheDir == "" {
		return nil
	}
	certs, fetched, ok := f.readDisk(key, now)
	if !ok {
		return nil
	}
	e = &entry{certs: certs, checked: fetched, until: fetched.Add(cmp.Or(f.TTL, DefaultTTL))}
	f.put(key, e, now)
	return e
}

// put adds e to the memory cache, making room when it is full.
func (f *Fetcher) put(key string, e *entry, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cache == nil {
		f.cache = make(map[string]*entry)
	}
	if _, ok := f.cache[key]; !ok && len(f.cache) >= maxMemEntries {
		for k, old := range f.cache {
			if !now.Before(old.until) {
				delete(f.cache, k)
			}
		}
		for k := range f.cache {
			if len(f.cache) < maxMemEntries {
				break
			}
			delete(f.cache, k)
		}
	}
	f.cache[key] = e
}

// store remembers what key served, in memory and on disk.
func (f *Fetcher) store(key string, certs []*x509.Certificate, now time.Time) {
	f.put(key, &entry{certs: certs, checked: now, until: now.Add(cmp.Or(f.TTL, DefaultTTL))}, now)
	if f.CacheDir != "" {
		// A failed disk write only costs a later re-fetch.
		_ = f.writeDisk(key, certs, now)
	}
}

// failed remembers that fetching key failed. What key served before, if
// still cached, is kept (it may issue other certificates); it is only not
// fetched again for NegativeTTL.
func (f *Fetcher) failed(key string, err error, now time.Time) {
	f.mu.Lock()
	if e, ok := f.cache[key]; ok && e.err == nil && now.Before(e.until) {
		e2 := *e
		e2.checked = now
		f.cache[key] = &e2
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	f.put(key, &entry{err: err, checked: now, until: now.Add(cmp.Or(f.NegativeTTL, DefaultNegativeTTL))}, now)
}

// ---- fetching ----

// parseURL checks that u is a caIssuers URL this package can fetch.
func parseURL(u string) (*url.URL, error) {
	p, err := url.Parse(u)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	switch strings.ToLower(p.Scheme) {
	case "http", "https", "ldap", "ldaps":
	default:
		return nil, fmt.Errorf("%w: scheme %q is not http, https, ldap or ldaps", ErrUnsupported, p.Scheme)
	}
	if p.Host == "" || p.Opaque != "" {
		return nil, fmt.Errorf("%w: no host", ErrUnsupported)
	}
	if p.User != nil {
		return nil, fmt.Errorf("%w: user information in the URL", ErrUnsupported)
	}
	return p, nil
}

// fetch reads u and returns the certificates it served.
func (f *Fetcher) fetch(ctx context.Context, u *url.URL) ([]*x509.Certificate, error) {
	var (
		certs []*x509.Certificate
		err   error
	)
	switch strings.ToLower(u.Scheme) {
	case "ldap", "ldaps":
		certs, err = f.fetchLDAP(ctx, u)
	default:
		var body []byte
		if body, err = f.fetchHTTP(ctx, u); err == nil {
			certs, err = parseResponse(body)
		}
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("no answer in time: %w (%v)", ctx.Err(), err)
	}
	return certs, err
}

// fetchHTTP GETs u and returns a 200 response's body of at most MaxSize
// bytes.
func (f *Fetcher) fetchHTTP(ctx context.Context, u *url.URL) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/pkix-cert, application/pkcs7-mime, application/x-x509-ca-cert, application/x-pkcs7-certificates, */*;q=0.1")
	resp, err := f.httpClient().Do(req)
	if err != nil {
		// *url.Error repeats the method and the URL, which URLError names.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	limit := cmp.Or(f.MaxSize, DefaultMaxSize)
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes announced, at most %d accepted", ErrTooLarge, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return body, nil
}

// fetchLDAP reads the certificates of an RFC 4516 URL
// (ldap://host:port/<dn>?<attributes>) with an anonymous base-object
// search. The scope and filter parts are ignored (RFC 5280 names the entry
// itself); a critical extension is refused. The search ends when ctx does.
func (f *Fetcher) fetchLDAP(ctx context.Context, u *url.URL) ([]*x509.Certificate, error) {
	parts := strings.Split(u.RawQuery, "?")
	if len(parts) > 4 {
		return nil, fmt.Errorf("%w: too many '?' parts", ErrUnsupported)
	}
	if len(parts) == 4 {
		for _, ext := range strings.Split(parts[3], ",") {
			if strings.HasPrefix(ext, "!") {
				return nil, fmt.Errorf("%w: critical LDAP extension %q", ErrUnsupported, ext)
			}
		}
	}
	var attrs []string
	if parts[0] != "" {
		list, err := url.PathUnescape(parts[0])
		if err != nil {
			return nil, fmt.Errorf("%w: attributes: %v", ErrUnsupported, err)
		}
		for _, a := range strings.Split(list, ",") {
			if a = strings.TrimSpace(a); a != "" {
				attrs = append(attrs, a)
			}
		}
	}
	if len(attrs) == 0 {
		attrs = []string{"cACertificate;binary", "cACertificate"}
	}
	wanted := make(map[string]bool)
	for _, a := range attrs {
		base, _, _ := strings.Cut(strings.ToLower(a), ";")
		wanted[base] = true
	}
	dn := strings.TrimPrefix(u.Path, "/")
	if dn != "" {
		if _, err := ldap.ParseDN(dn); err != nil {
			return nil, fmt.Errorf("%w: DN %q: %v", ErrUnsupported, dn, err)
		}
	}

	tlsOn := strings.EqualFold(u.Scheme, "ldaps")
	port := u.Port()
	if port == "" {
		port = "389"
		if tlsOn {
			port = "636"
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return nil, err
	}
	if tlsOn {
		tc := tls.Client(conn, &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS: %w", err)
		}
		conn = tc
	}
	l := ldap.NewConn(conn, tlsOn)
	l.Start()
	defer l.Close()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	timeLimit := 0
	if dl, ok := ctx.Deadline(); ok {
		rest := time.Until(dl)
		// The context closes the connection when it ends; the library's
		// own timeout is only a backstop, later, so that running out of
		// time is always reported as the context's error.
		l.SetTimeout(rest + time.Second)
		timeLimit = int((rest + time.Second - 1) / time.Second)
	}
	res, err := l.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, timeLimit, false, "(objectClass=*)", attrs, nil))
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("no answer in time: %w", ctx.Err())
		}
		return nil, err
	}
	var (
		certs    []*x509.Certificate
		size     int64
		firstErr error
		values   int
	)
	limit := cmp.Or(f.MaxSize, DefaultMaxSize)
	for _, e := range res.Entries {
		for _, a := range e.Attributes {
			base, _, _ := strings.Cut(strings.ToLower(a.Name), ";")
			if !wanted[base] {
				continue
			}
			for _, v := range a.ByteValues {
				values++
				if size += int64(len(v)); size > limit {
					return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
				}
				got, err := parseResponse(v)
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					continue
				}
				if len(certs)+len(got) > maxCerts {
					return nil, fmt.Errorf("%w: more than %d certificates", ErrTooLarge, maxCerts)
				}
				certs = append(certs, got...)
			}
		}
	}
	if len(certs) > 0 {
		return certs, nil
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return nil, fmt.Errorf("no %s value at %q", strings.Join(attrs, " or "), dn)
}

// ---- disk cache ----

// A cache file is this header, the URL quoted, the time it was fetched,
// an empty line and the certificates as PEM.
const diskMagic = "smimed-aia-cache 1\n"

func (f *Fetcher) diskPath(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(f.CacheDir, hex.EncodeToString(sum[:])+".pem")
}

// readDisk returns the certificates cached on disk for key and when they
// were fetched, if the file is there, readable and fresh. A file that is
// not readable is removed.
func (f *Fetcher) readDisk(key string, now time.Time) ([]*x509.Certificate, time.Time, bool) {
	path := f.diskPath(key)
	file, err := os.Open(path)
	if err != nil {
		return nil, time.Time{}, false
	}
	// PEM is about 4/3 of DER; the file holds no more than a response.
	data, err := io.ReadAll(io.LimitReader(file, 2*cmp.Or(f.MaxSize, DefaultMaxSize)+4096))
	file.Close()
	if err != nil {
		return nil, time.Time{}, false
	}
	certs, fetched, err := decodeDisk(data, key)
	if err != nil {
		os.Remove(path)
		return nil, time.Time{}, false
	}
	if now.Before(fetched) || !now.Before(fetched.Add(cmp.Or(f.TTL, DefaultTTL))) {
		return nil, time.Time{}, false
	}
	return certs, fetched, true
}

func encodeDisk(key string, certs []*x509.Certificate, fetched time.Time) []byte {
	var b bytes.Buffer
	b.WriteString(diskMagic)
	fmt.Fprintf(&b, "url %q\nfetched %s\n\n", key, fetched.UTC().Format(time.RFC3339Nano))
	for _, c := range certs {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

func decodeDisk(data []byte, key string) ([]*x509.Certificate, time.Time, error) {
	rest, ok := bytes.CutPrefix(data, []byte(diskMagic))
	if !ok {
		return nil, time.Time{}, errors.New("not a cache file")
	}
	head, body, ok := bytes.Cut(rest, []byte("\n\n"))
	if !ok {
		return nil, time.Time{}, errors.New("no header end")
	}
	lines := strings.Split(string(head), "\n")
	if len(lines) != 2 || lines[0] != fmt.Sprintf("url %q", key) {
		return nil, time.Time{}, errors.New("another URL's file")
	}
	ts, ok := strings.CutPrefix(lines[1], "fetched ")
	if !ok {
		return nil, time.Time{}, errors.New("no fetch time")
	}
	fetched, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return nil, time.Time{}, err
	}
	certs, err := parseResponse(body)
	if err != nil {
		return nil, time.Time{}, err
	}
	return certs, fetched, nil
}

// writeDisk writes key's certificates to the cache directory atomically.
func (f *Fetcher) writeDisk(key string, certs []*x509.Certificate, now time.Time) error {
	if err := os.MkdirAll(f.CacheDir, 0o700); err != nil {
		return err
	}
	path := f.diskPath(key)
	if _, err := os.Stat(path); err != nil && !f.roomOnDisk(now) {
		return errors.New("disk cache full")
	}
	tmp, err := os.CreateTemp(f.CacheDir, ".aia-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(encodeDisk(key, certs, now))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return err
	}
	if d, err := os.Open(f.CacheDir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// roomOnDisk reports whether another file fits in the cache directory,
// after removing stale files (and temporary files left by a crash) when it
// is full.
func (f *Fetcher) roomOnDisk(now time.Time) bool {
	ents, err := os.ReadDir(f.CacheDir)
	if err != nil {
		return false
	}
	if len(ents) < maxDiskEntries {
		return true
	}
	n := len(ents)
	for _, e := range ents {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		age := now.Sub(info.ModTime())
		if age >= cmp.Or(f.TTL, DefaultTTL) || (strings.HasPrefix(e.Name(), ".aia-") && age > time.Hour) {
			if os.Remove(filepath.Join(f.CacheDir, e.Name())) == nil {
				n--
			}
		}
	}
	return n < maxDiskEntries
}
