package directory

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"
	"unsafe"

	"github.com/go-ldap/ldap/v3"

	"github.com/smimed/smimed/smime/cms"
)

// attributes are asked of every server: DER certificates with and without
// the ;binary transfer option (OpenLDAP needs it, Active Directory does not
// use it) and the PKCS #7 certs-only blob of userSMIMECertificate.
var attributes = []string{"userCertificate;binary", "userCertificate", "userSMIMECertificate"}

// searchServer looks email up on one server.
func (d *Directory) searchServer(ctx context.Context, s *Server, email string) ([]*x509.Certificate, *ServerError) {
	fail := func(kind, err error) *ServerError { return &ServerError{Server: s.URL, Kind: kind, Err: err} }

	// Credentials first, outside the time limits: the key store may ask
	// the user to unlock it.
	var (
		dn string
		pw []byte
	)
	if d.opts.Credentials != nil {
		var err error
		dn, pw, err = d.opts.Credentials(ctx, s.URL)
		defer clear(pw)
		if err != nil {
			return nil, fail(ErrBind, fmt.Errorf("credentials: %w", err))
		}
		if dn != "" && len(pw) == 0 {
			// An empty password would be an unauthenticated bind, which
			// servers accept without checking anything.
			return nil, fail(ErrBind, fmt.Errorf("empty password for %q", dn))
		}
	}
	if s.BindDN != "" && dn == "" {
		// The URL asks for an authenticated bind: an anonymous one would
		// at best find nothing, at worst other entries.
		return nil, fail(ErrBind, fmt.Errorf("no credentials for bindname %q", s.BindDN))
	}

	ctx, cancel := context.WithTimeout(ctx, d.opts.DialTimeout+d.opts.SearchTimeout)
	defer cancel()
	conn, err := d.dial(ctx, s)
	if err != nil {
		if ctx.Err() == nil && isTLSError(err) {
			return nil, fail(ErrTLS, err)
		}
		return nil, fail(ErrUnreachable, err)
	}
	l := ldap.NewConn(conn, s.TLS)
	l.Start()
	defer l.Close()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	l.SetTimeout(d.opts.SearchTimeout)

	// classify tells an unreachable or silent server from a refusal.
	classify := func(kind error, what string, err error) *ServerError {
		if ctx.Err() != nil {
			return fail(ErrUnreachable, fmt.Errorf("%s: no answer in time: %w", what, context.Cause(ctx)))
		}
		if ldap.IsErrorWithCode(err, ldap.ErrorNetwork) {
			return fail(ErrUnreachable, fmt.Errorf("%s: %w", what, err))
		}
		return fail(kind, fmt.Errorf("%s: %w", what, err))
	}

	if dn != "" {
		// The password is handed to the library without a copy that
		// could not be zeroed; the bytes are cleared when this returns.
		// (The library's encoded request buffers are garbage, not
		// cleared.)
		_, err := l.SimpleBind(&ldap.SimpleBindRequest{Username: dn, Password: unsafe.String(&pw[0], len(pw))})
		if err != nil {
			return nil, classify(ErrBind, fmt.Sprintf("bind as %q", dn), err)
		}
	}

	limit := int((d.opts.SearchTimeout + time.Second - 1) / time.Second)
	req := ldap.NewSearchRequest(s.BaseDN, s.Scope, ldap.NeverDerefAliases, d.opts.SizeLimit, limit, false,
		s.filter(email), attributes, nil)
	req.EnforceSizeLimit = true
	res, err := l.Search(req)
	if err != nil && !(res != nil && ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded)) {
		return nil, classify(ErrSearch, "search", err)
	}
	var out []*x509.Certificate
	for _, e := range res.Entries {
		out = append(out, entryCertificates(e)...)
	}
	return out, nil
}

// dial connects to s, with TLS for ldaps://, within the dial timeout.
func (d *Directory) dial(ctx context.Context, s *Server) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.DialTimeout)
	defer cancel()
	nd := net.Dialer{Timeout: d.opts.DialTimeout}
	conn, err := nd.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return nil, err
	}
	if !s.TLS {
		return conn, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if d.opts.TLSConfig != nil {
		cfg = d.opts.TLSConfig.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName = s.Host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return tc, nil
}

// isTLSError reports whether a dial error is the TLS handshake's refusal
// (the server's certificate did not verify, a TLS alert, an answer that is
// not TLS) rather than a network failure or a timeout.
func isTLSError(err error) bool {
	var (
		verr   *tls.CertificateVerificationError
		recErr tls.RecordHeaderError
		alert  tls.AlertError
		ua     x509.UnknownAuthorityError
		he     x509.HostnameError
		ci     x509.CertificateInvalidError
	)
	return errors.As(err, &verr) || errors.As(err, &recErr) || errors.As(err, &alert) ||
		errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// entryCertificates returns the certificates of one entry: DER values of
// userCertificate (with or without ;binary, and any other option) and the
// certificates of userSMIMECertificate's certs-only blobs. Values that do
// not parse are skipped.
func entryCertificates(e *ldap.Entry) []*x509.Certificate {
	var out []*x509.Certificate
	for _, a := range e.Attributes {
		base, _, _ := strings.Cut(strings.ToLower(a.Name), ";")
		switch base {
		case "usercertificate":
			for _, v := range a.ByteValues {
				if c, err := x509.ParseCertificate(v); err == nil {
					out = append(out, c)
				}
			}
		case "usersmimecertificate":
			for _, v := range a.ByteValues {
				sd, _, err := cms.ParseSignedData(v)
				if err != nil {
					continue
				}
				out = append(out, sd.Certificates...)
			}
		}
	}
	return out
}
