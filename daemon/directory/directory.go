// Package directory looks recipients' certificates up in LDAP directories
// (OpenLDAP, Active Directory and other RFC 4511 servers).
//
// Servers are given as RFC 4516 URLs (the `[directory] ldap` key of the
// configuration), for example ldap://127.0.0.1:3890/dc=example,dc=org or
// ldaps://ldap.example.org/ou=people,dc=example,dc=org??sub?(objectClass=person).
// The base DN comes from the URL's path; its scope (base, one, sub; default
// sub) and filter are honoured, the filter being combined with the address
// filter. See ParseURL.
//
// A lookup searches every server, in order, for
//
//	(|(mail=ADDR)(proxyAddresses=smtp:ADDR))
//
// (ADDR escaped with ldap.EscapeFilter, so an address cannot change the
// filter) and reads the attributes userCertificate;binary and
// userCertificate (DER certificates; Active Directory returns them without
// the ;binary option) and userSMIMECertificate (a PKCS #7 / CMS certs-only
// blob, read with smime/cms). The certificates of all servers are merged
// and de-duplicated by their SHA-256 fingerprint; the caller chooses among
// them (validity, key usage, trust). An error of one server (ErrUnreachable,
// ErrTLS, ErrBind, ErrSearch, in a *ServerError naming it) does not hide the
// answers of the others: Lookup returns those certificates together with a
// *LookupError for the address.
//
// Binding is anonymous unless the server's URL has a bindname extension
// (RFC 4516: ...??sub??bindname=cn=reader%2cdc=example%2cdc=org) or
// Options.Credentials returns a DN for the server: then it is a simple
// bind, with the password the callback returns (the daemon reads it from
// the key store, never from the configuration file), whose bytes are
// zeroed once the bind is done. A URL with a bindname is never searched
// anonymously: without credentials for it the server's result is ErrBind.
// Simple binds send the password as it is, so use them over ldaps://.
//
// ldaps:// servers are verified against the system roots, or
// Options.TLSConfig's RootCAs when set; a server whose certificate does
// not verify is an ErrTLS.
//
// Every lookup connects afresh with a short dial timeout (default 3 s), and
// the bind and search are limited by a time limit (default 5 s), all under
// the caller's context: an unreachable or silent server never hangs a
// caller. Answers are cached per Directory value (no package-level state)
// for Options.TTL (default 1 h) and "no certificate" answers for
// Options.NegativeTTL (default 5 min); an answer with a server error is not
// cached. Concurrent lookups of the same address share one search.
//
// Privacy: lookups happen only when composing a message or when the user
// asks (smimectl, the plugin's certificate search), never while a message
// is read or verified — a lookup at read time would tell the directory's
// operator, and possibly the sender, when the mail was read. The daemon
// enforces this by calling Lookup only from CertsFind and Encrypt.
package directory

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Defaults for Options.
const (
	DefaultTTL           = time.Hour
	DefaultNegativeTTL   = 5 * time.Minute
	DefaultDialTimeout   = 3 * time.Second
	DefaultSearchTimeout = 5 * time.Second
	// DefaultSizeLimit is the number of entries asked of a server per
	// lookup.
	DefaultSizeLimit = 50
	// maxCacheEntries bounds the cache; expired entries go first.
	maxCacheEntries = 4096
)

// CredentialsFunc returns the bind DN and password for a server, named by
// its URL as configured (ParseURL gives its BindDN and Origin). An empty
// DN means an anonymous bind, which is refused (ErrBind) when the URL has a
// bindname. The Directory zeroes the password after use. An error makes
// that server's result an ErrBind wrapping it.
type CredentialsFunc func(ctx context.Context, serverURL string) (dn string, password []byte, err error)

// Options configures a Directory. The zero value of each field selects its
// default.
type Options struct {
	// Servers are RFC 4516 URLs, searched in order.
	Servers []string
	// Credentials supplies bind DNs and passwords; nil binds anonymously
	// everywhere.
	Credentials CredentialsFunc
	// TTL is how long found certificates are cached (default 1 h; negative
	// disables the cache).
	TTL time.Duration
	// NegativeTTL is how long "nothing found" is cached (default 5 min;
	// negative disables negative caching).
	NegativeTTL time.Duration
	// DialTimeout limits connecting, TLS included (default 3 s).
	DialTimeout time.Duration
	// SearchTimeout limits the bind and the search on one server
	// (default 5 s); it is also sent to the server as the time limit.
	SearchTimeout time.Duration
	// SizeLimit is the largest number of entries asked of one server
	// (default 50).
	SizeLimit int
	// TLSConfig is used for ldaps:// servers; nil verifies against the
	// system roots. Its RootCAs are the CAs trusted to vouch for servers
	// (nil = the system roots). ServerName is set from the URL when
	// empty.
	TLSConfig *tls.Config
	// Now is the clock (default time.Now); tests inject a fake one.
	Now func() time.Time
}

// Directory looks certificates up in a list of LDAP servers. It is safe
// for concurrent use.
type Directory struct {
	servers []*Server
	opts    Options

	mu       sync.Mutex
	cache    map[string]cacheEntry
	inflight map[string]*call
}

type cacheEntry struct {
	certs   []*x509.Certificate
	expires time.Time
}

// call is one search shared by the concurrent lookups of one address.
type call struct {
	done    chan struct{}
	certs   []*x509.Certificate
	err     error
	waiters int
	cancel  context.CancelFunc
}

// Errors wrapped by a *ServerError.
var (
	// ErrUnreachable: the server could not be reached, the connection
	// broke, or it did not answer in time.
	ErrUnreachable = errors.New("directory: server unreachable")
	// ErrBind: the bind was refused, or its credentials could not be
	// obtained.
	ErrBind = errors.New("directory: bind failed")
	// ErrSearch: the server refused the search.
	ErrSearch = errors.New("directory: search failed")
	// ErrTLS: the TLS handshake with an ldaps:// server failed: its
	// certificate does not chain to the trusted roots (Options.TLSConfig)
	// or does not name the host, or the server's answer is not TLS. The
	// *tls.CertificateVerificationError is in the chain when that was
	// the reason.
	ErrTLS = errors.New("directory: TLS handshake failed")
	// ErrInvalidAddress: the address given to Lookup is not usable.
	ErrInvalidAddress = errors.New("directory: invalid address")
)

// ServerError is the failure of one server during a lookup.
type ServerError struct {
	// Server is the server's URL as configured.
	Server string
	// Kind is ErrUnreachable, ErrTLS, ErrBind or ErrSearch.
	Kind error
	// Err is the cause. It never contains a password.
	Err error
}

// Error implements error.
func (e *ServerError) Error() string {
	return fmt.Sprintf("%v: %s: %v", e.Kind, e.Server, e.Err)
}

// Unwrap returns the kind and the cause.
func (e *ServerError) Unwrap() []error { return []error{e.Kind, e.Err} }

// LookupError reports the servers that failed during the lookup of one
// address. Certificates found on the other servers are returned with it.
type LookupError struct {
	// Address is the address looked up.
	Address string
	// Servers are the failures, in server order.
	Servers []*ServerError
}

// Error implements error.
func (e *LookupError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "directory: lookup of %s:", e.Address)
	for i, s := range e.Servers {
		if i > 0 {
			b.WriteString(";")
		}
		b.WriteString(" ")
		b.WriteString(s.Error())
	}
	return b.String()
}

// Unwrap returns the servers' errors, so that errors.Is(err,
// ErrUnreachable) and errors.As(err, &serverErr) work.
func (e *LookupError) Unwrap() []error {
	out := make([]error, len(e.Servers))
	for i, s := range e.Servers {
		out[i] = s
	}
	return out
}

// New checks the options and parses the server URLs. It does not connect.
func New(opts Options) (*Directory, error) {
	d := &Directory{
		opts:     opts,
		cache:    make(map[string]cacheEntry),
		inflight: make(map[string]*call),
	}
	for _, raw := range opts.Servers {
		s, err := ParseURL(raw)
		if err != nil {
			return nil, err
		}
		d.servers = append(d.servers, s)
	}
	o := &d.opts
	if o.TTL == 0 {
		o.TTL = DefaultTTL
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.SearchTimeout <= 0 {
		o.SearchTimeout = DefaultSearchTimeout
	}
	if o.SizeLimit <= 0 {
		o.SizeLimit = DefaultSizeLimit
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return d, nil
}

// Servers returns the parsed servers, in search order.
func (d *Directory) Servers() []Server {
	out := make([]Server, len(d.servers))
	for i, s := range d.servers {
		out[i] = *s
	}
	return out
}

// Forget drops the cached answer for email (all addresses when email is
// ""), so that the next Lookup asks the servers.
func (d *Directory) Forget(email string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if email == "" {
		clear(d.cache)
		return
	}
	delete(d.cache, cacheKey(email))
}

func cacheKey(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// Lookup returns the certificates the directories hold for email, merged
// and de-duplicated, from the cache when a fresh answer is there. When
// some servers failed, the others' certificates are returned with a
// *LookupError; when the context ends first, its error is returned.
//
// Call it only when composing or on the user's request, never while a
// message is read (see the package documentation).
func (d *Directory) Lookup(ctx context.Context, email string) ([]*x509.Certificate, error) {
	email = strings.TrimSpace(email)
	if email == "" || !strings.Contains(email, "@") || strings.ContainsFunc(email, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("%w: %q", ErrInvalidAddress, email)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	key := cacheKey(email)

	d.mu.Lock()
	if e, ok := d.cache[key]; ok {
		if d.opts.Now().Before(e.expires) {
			d.mu.Unlock()
			return append([]*x509.Certificate(nil), e.certs...), nil
		}
		delete(d.cache, key)
	}
	c, ok := d.inflight[key]
	if ok {
		c.waiters++
	} else {
		// The shared search is not cancelled by one caller leaving, only
		// when every caller has left; each step has its own time limit.
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &call{done: make(chan struct{}), waiters: 1, cancel: cancel}
		d.inflight[key] = c
		go d.run(sctx, key, email, c)
	}
	d.mu.Unlock()

	select {
	case <-c.done:
		return append([]*x509.Certificate(nil), c.certs...), c.err
	case <-ctx.Done():
		d.mu.Lock()
		c.waiters--
		if c.waiters == 0 {
			c.cancel()
			if d.inflight[key] == c {
				delete(d.inflight, key)
			}
		}
		d.mu.Unlock()
		return nil, ctx.Err()
	}
}

// run performs the search of c and publishes it.
func (d *Directory) run(ctx context.Context, key, email string, c *call) {
	defer c.cancel()
	certs, lerr := d.searchAll(ctx, email)
	d.mu.Lock()
	if d.inflight[key] == c {
		delete(d.inflight, key)
	}
	c.certs = certs
	if lerr != nil {
		c.err = lerr
	} else if ctx.Err() == nil {
		d.store(key, certs)
	}
	d.mu.Unlock()
	close(c.done)
}

// store caches an answer; d.mu is held.
func (d *Directory) store(key string, certs []*x509.Certificate) {
	ttl := d.opts.TTL
	if len(certs) == 0 {
		ttl = d.opts.NegativeTTL
	}
	if d.opts.TTL < 0 || ttl < 0 {
		return
	}
	now := d.opts.Now()
	if len(d.cache) >= maxCacheEntries {
		for k, e := range d.cache {
			if !now.Before(e.expires) {
				delete(d.cache, k)
			}
		}
		for k := range d.cache {
			if len(d.cache) < maxCacheEntries {
				break
			}
			delete(d.cache, k)
		}
	}
	d.cache[key] = cacheEntry{certs: certs, expires: now.Add(ttl)}
}

// searchAll asks every server in order and merges the answers.
func (d *Directory) searchAll(ctx context.Context, email string) ([]*x509.Certificate, *LookupError) {
	var (
		out  []*x509.Certificate
		seen = make(map[[32]byte]bool)
		lerr *LookupError
	)
	for _, s := range d.servers {
		certs, err := d.searchServer(ctx, s, email)
		if err != nil {
			if lerr == nil {
				lerr = &LookupError{Address: email}
			}
			lerr.Servers = append(lerr.Servers, err)
		}
		for _, c := range certs {
			fp := sha256.Sum256(c.Raw)
			if !seen[fp] {
				seen[fp] = true
				out = append(out, c)
			}
		}
	}
	return out, lerr
}
