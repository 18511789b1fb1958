package directory

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Server is one directory server, parsed from an RFC 4516 LDAP URL.
type Server struct {
	// URL is the URL as configured; it names the server in errors and is
	// handed to the credentials callback.
	URL string
	// TLS is true for ldaps:// (TLS from the first byte).
	TLS bool
	// Addr is host:port (port 389 for ldap://, 636 for ldaps:// when the
	// URL names none).
	Addr string
	// Host is the host name without the port, used for TLS verification.
	Host string
	// BaseDN is the search base from the URL's path ("" = the root).
	BaseDN string
	// Scope is ldap.ScopeBaseObject, ScopeSingleLevel or
	// ScopeWholeSubtree (the default when the URL gives none).
	Scope int
	// Filter is the URL's filter, or "" when it has none. A lookup
	// searches for entries matching both it and the address.
	Filter string
	// BindDN is the DN of the URL's bindname extension (RFC 4516 section
	// 2, "bindname=<dn>" or the critical "!bindname=<dn>", the value
	// percent-decoded), or "" when the URL has none: then the bind is
	// anonymous. The password for it is never in the URL; it comes from
	// Options.Credentials.
	BindDN string
}

// Origin returns "scheme://host:port" of the server, lower-case, with the
// port always given (389 or 636 when the URL names none), e.g.
// "ldap://ldap.example.org:389" or "ldaps://[::1]:636". The daemon uses it,
// with BindDN, to find the bind password in the key store.
func (s *Server) Origin() string {
	scheme := "ldap"
	if s.TLS {
		scheme = "ldaps"
	}
	return scheme + "://" + strings.ToLower(s.Addr)
}

// ParseURL parses an RFC 4516 URL: ldap[s]://host[:port]/[dn[?attrs[?scope[?filter[?exts]]]]].
// The host is required (there is no default server). The attributes part
// is ignored (the package asks for the certificate attributes it knows),
// scope is "base", "one" or "sub" (default "sub"), and the filter must be a
// valid LDAP filter.
//
// Extensions are comma-separated, each "[!]type[=value]" with commas and
// question marks in the value percent-encoded. The one understood is
// bindname, whose value is the DN to bind as (Server.BindDN), e.g.
//
//	ldap://ldap.example.org/dc=example,dc=org??sub??bindname=cn=reader%2cdc=example%2cdc=org
//
// An unknown extension is ignored, unless it is critical ("!type"): then,
// as RFC 4516 requires, the URL is refused. So is an extension given twice
// and a bindname that is empty or not a DN.
func ParseURL(raw string) (*Server, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("directory: %q: %w", raw, err)
	}
	s := &Server{URL: raw, Scope: ldap.ScopeWholeSubtree}
	var port string
	switch strings.ToLower(u.Scheme) {
	case "ldap":
		port = "389"
	case "ldaps":
		port, s.TLS = "636", true
	default:
		return nil, fmt.Errorf("directory: %q: not an ldap:// or ldaps:// URL", raw)
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("directory: %q: user information, fragments and opaque URLs are not allowed", raw)
	}
	s.Host = u.Hostname()
	if s.Host == "" {
		return nil, fmt.Errorf("directory: %q: no host", raw)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	s.Addr = net.JoinHostPort(s.Host, port)
	s.BaseDN = strings.TrimPrefix(u.Path, "/")
	if s.BaseDN != "" {
		if _, err := ldap.ParseDN(s.BaseDN); err != nil {
			return nil, fmt.Errorf("directory: %q: base DN: %w", raw, err)
		}
	}
	if u.RawQuery == "" {
		return s, nil
	}
	parts := strings.Split(u.RawQuery, "?")
	if len(parts) > 4 {
		return nil, fmt.Errorf("directory: %q: too many '?' parts", raw)
	}
	field := func(i int) (string, error) {
		if i >= len(parts) {
			return "", nil
		}
		return url.PathUnescape(parts[i])
	}
	// parts[0] is the attribute list: ignored.
	scope, err := field(1)
	if err != nil {
		return nil, fmt.Errorf("directory: %q: scope: %w", raw, err)
	}
	switch strings.ToLower(scope) {
	case "", "sub":
		s.Scope = ldap.ScopeWholeSubtree
	case "one":
		s.Scope = ldap.ScopeSingleLevel
	case "base":
		s.Scope = ldap.ScopeBaseObject
	default:
		return nil, fmt.Errorf("directory: %q: scope %q is not base, one or sub", raw, scope)
	}
	filter, err := field(2)
	if err != nil {
		return nil, fmt.Errorf("directory: %q: filter: %w", raw, err)
	}
	if filter != "" {
		if !strings.HasPrefix(filter, "(") {
			filter = "(" + filter + ")"
		}
		if _, err := ldap.CompileFilter(filter); err != nil {
			return nil, fmt.Errorf("directory: %q: filter: %w", raw, err)
		}
		s.Filter = filter
	}
	if len(parts) == 4 {
		if err := s.parseExtensions(parts[3]); err != nil {
			return nil, fmt.Errorf("directory: %q: %w", raw, err)
		}
	}
	return s, nil
}

// parseExtensions reads the extensions part of a URL (still
// percent-encoded): bindname sets BindDN, other extensions are ignored
// unless critical.
func (s *Server) parseExtensions(exts string) error {
	if exts == "" {
		return nil
	}
	seen := make(map[string]bool)
	afterBindname := false
	for _, ext := range strings.Split(exts, ",") {
		critical := strings.HasPrefix(ext, "!")
		rawType, rawValue, hasValue := strings.Cut(strings.TrimPrefix(ext, "!"), "=")
		typ, err := url.PathUnescape(rawType)
		if err != nil {
			return fmt.Errorf("extension %q: %w", ext, err)
		}
		if typ == "" {
			return fmt.Errorf("extension %q has no type", ext)
		}
		key := strings.ToLower(typ)
		if seen[key] {
			return fmt.Errorf("extension %q appears twice", typ)
		}
		seen[key] = true
		value, err := url.PathUnescape(rawValue)
		if err != nil {
			return fmt.Errorf("extension %q: %w", typ, err)
		}
		switch key {
		case "bindname":
			if !hasValue || strings.TrimSpace(value) == "" {
				return errors.New("bindname needs a DN (bindname=cn=reader%2cdc=example%2cdc=org)")
			}
			if _, err := ldap.ParseDN(value); err != nil {
				return fmt.Errorf("bindname %q: %w", value, err)
			}
			s.BindDN = value
			afterBindname = true
			continue
		default:
			if critical {
				return fmt.Errorf("critical extension %q is not supported", "!"+typ)
			}
			if afterBindname && hasValue && dnAttributeTypes[key] {
				// "bindname=cn=reader,dc=example,dc=org" is a bindname of
				// "cn=reader" followed by extensions "dc": surely a
				// forgotten escape rather than an extension named dc.
				return fmt.Errorf("extension %q after bindname looks like the rest of its DN: write the commas of the DN as %%2c", ext)
			}
		}
		afterBindname = false
	}
	return nil
}

// dnAttributeTypes are attribute types that begin the RDNs of bind DNs;
// no extension is named like them.
var dnAttributeTypes = map[string]bool{
	"cn": true, "ou": true, "o": true, "dc": true, "c": true, "l": true, "st": true, "uid": true, "street": true,
}

// filter returns the search filter for one address on s.
func (s *Server) filter(email string) string {
	e := ldap.EscapeFilter(email)
	f := "(|(mail=" + e + ")(proxyAddresses=smtp:" + e + "))"
	if s.Filter != "" {
		f = "(&" + s.Filter + f + ")"
	}
	return f
}
