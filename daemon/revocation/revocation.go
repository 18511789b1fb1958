// Package revocation answers "is this certificate revoked?" for the daemon,
// from OCSP responders named in the certificate's Authority Information
// Access extension and from the CRLs named in its CRL distribution points.
//
// # Design
//
// A [Checker] is built once by the daemon and shared by all goroutines. It
// holds no package-level state: the HTTP client, the clock, the time budget
// and the optional on-disk CRL cache are fields of the Checker.
//
// Check asks OCSP first when the certificate names http OCSP responders, then
// falls back to the CRL distribution points. When the certificate has CRL
// distribution points, OCSP gets at most half of the time budget so that the
// CRL fallback still has time; the whole check never takes longer than
// Checker.Timeout (5 s by default) and also ends when the caller's context
// does.
//
// OCSP requests are sent with HTTP POST and carry a fresh random 16-byte
// id-pkix-ocsp-nonce extension (RFC 8954 encoding: the extension value is a
// DER OCTET STRING). golang.org/x/crypto/ocsp cannot add request extensions,
// so the request it builds is re-encoded with the extension. When the
// responder echoes a nonce it must be ours, otherwise the response is
// rejected (a replayed response). Responders that do not echo the nonce (most
// pre-produced responses) are accepted. Responses must be signed by the
// issuer itself or by a delegated responder certificate issued by the issuer
// carrying id-kp-OCSPSigning and valid now (ocsp.ParseResponseForCert checks
// the signatures, this package checks the extended key usage and validity).
// thisUpdate must not be in the future and nextUpdate, when present, not in
// the past, both with Checker.ClockSkew tolerance. A responder answering
// "unknown" is treated like an unreachable one: the CRLs are tried next.
//
// CRLs are fetched from each distribution point in order until one works
// (failover: an HTTP 404, an unreachable server or a bad CRL moves on to the
// next point). http(s) points are read with GET; ldap:// and ldaps:// points
// (RFC 4516 URLs such as ldap://host/cn=CA,o=X?certificateRevocationList;binary)
// with an anonymous base-object search through github.com/go-ldap/ldap/v3.
// A CRL is limited to Checker.MaxCRLSize bytes (10 MiB by default), accepted
// in DER or PEM, and must name the issuer as its issuer, verify against the
// issuer's key (x509.RevocationList.CheckSignatureFrom, which also honours the
// issuer's cRLSign key usage) and be current (thisUpdate not in the future,
// nextUpdate not in the past, with ClockSkew). A CRL that fails any of these
// is never used: with no other source the result is Unknown and the detail
// says why ("bad signature: ...", "CRL expired ..."). Delta CRLs and issuing
// distribution point scoping are not interpreted.
//
// Caching: definitive OCSP answers (good or revoked) are cached per issuer
// key and serial number until the response's nextUpdate, or for
// Checker.MaxCacheAge (1 h by default) when it has none. Verified CRLs are
// cached in memory per URL and issuer key until their nextUpdate
// (MaxCacheAge when absent). With Checker.CacheDir set, fetched CRLs are also
// written there (temporary file, fsync, rename: a reader sees the old or the
// new file, never half of one) and a fresh Checker (a daemon restart) uses
// them, re-verified on load, while their nextUpdate is ahead. A failed
// source is never cached as such, but an Unknown result is remembered per
// certificate for Checker.NegativeTTL (2 min by default; not when the
// caller's context ended): with the responders out of reach (a laptop
// offline, a firewall dropping packets), reading a folder of mail costs one
// timeout, not one per message. Two concurrent checks that both miss the cache both fetch;
// no network access happens under the Checker's lock.
//
// Not done yet: OCSP over HTTP GET (POST is always used), authenticated
// LDAP binds, delta CRLs, and pre-fetching before nextUpdate.
//
// # Policy
//
// The Checker never turns "could not find out" into Good: Unknown is always
// reported as Unknown, with Detail saying why. Policy only tells the daemon
// what to do with it: under [SoftFail] (the zero value and default) an Unknown
// result is shown to the user but does not fail the operation; under
// [HardFail] the daemon must treat Unknown as a failure; under [Off] Check
// returns NotChecked without touching the network. [Checker.Fails] encodes
// that rule for callers.
//
// The Checker does not build or verify chains: the caller passes the issuer
// it has already verified. Check only requires that the certificate's issuer
// name matches the issuer's subject.
package revocation

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
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
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
	"golang.org/x/crypto/ocsp"
)

// Status is the outcome of a revocation check. Its values are the strings
// the daemon's status JSON uses.
type Status string

// The statuses a check can end with.
const (
	// Good means an OCSP responder or a CRL said the certificate is not revoked.
	Good Status = "good"
	// Revoked means the certificate is revoked; Result.RevokedAt and Reason say when and why.
	Revoked Status = "revoked"
	// Unknown means no source could answer; Result.Detail says why. It is never Good.
	Unknown Status = "unknown"
	// NotChecked means checking is off by policy.
	NotChecked Status = "not-checked"
)

// Policy says how the daemon treats a certificate whose status is Unknown.
type Policy int

// The policies. The zero value is SoftFail.
const (
	// SoftFail reports Unknown as Unknown but does not fail the operation.
	SoftFail Policy = iota
	// HardFail makes the daemon treat Unknown as a failure.
	HardFail
	// Off disables checking: Check returns NotChecked without network access.
	Off
)

// String returns the configuration spelling of p: "soft-fail", "hard-fail" or "off".
func (p Policy) String() string {
	switch p {
	case SoftFail:
		return "soft-fail"
	case HardFail:
		return "hard-fail"
	case Off:
		return "off"
	}
	return fmt.Sprintf("Policy(%d)", int(p))
}

// ParsePolicy parses a configuration value: "soft-fail" (or ""), "hard-fail" or "off".
func ParsePolicy(s string) (Policy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "soft-fail", "softfail", "soft":
		return SoftFail, nil
	case "hard-fail", "hardfail", "hard":
		return HardFail, nil
	case "off", "none", "false":
		return Off, nil
	}
	return SoftFail, fmt.Errorf("revocation: unknown policy %q (want soft-fail, hard-fail or off)", s)
}

// Result is what a check found out.
type Result struct {
	// Status is the outcome.
	Status Status `json:"status"`
	// RevokedAt is the revocation time when Status is Revoked.
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	// Reason is the RFC 5280 CRLReason name (e.g. "keyCompromise") when
	// Status is Revoked and the source gave one.
	Reason string `json:"reason,omitempty"`
	// Source is "ocsp <url>" or "crl <url>" for Good and Revoked.
	Source string `json:"source,omitempty"`
	// Cached reports that the answer came from the cache, not the network.
	Cached bool `json:"cached,omitempty"`
	// Detail explains an Unknown (or NotChecked) status.
	Detail string `json:"detail,omitempty"`
}

// Defaults used when the corresponding Checker field is zero.
const (
	DefaultTimeout     = 5 * time.Second
	DefaultClockSkew   = 5 * time.Minute
	DefaultMaxCacheAge = time.Hour
	DefaultMaxCRLSize  = 10 << 20
	DefaultNegativeTTL = 2 * time.Minute
	maxOCSPResponse    = 1 << 20
)

// Checker checks certificates for revocation. Its exported fields are
// configuration and must be set before the first Check; the zero value is
// usable (SoftFail, 5 s timeout, no disk cache). A Checker is safe for
// concurrent use and must not be copied after first use.
type Checker struct {
	// Policy is reported to callers through Fails; Off disables checking.
	Policy Policy
	// HTTPClient is used for OCSP and CRL requests; nil means a private
	// client with default settings (deadlines come from the context).
	HTTPClient *http.Client
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Timeout bounds a whole Check; zero means DefaultTimeout.
	Timeout time.Duration
	// ClockSkew is the tolerance on thisUpdate and nextUpdate; zero means DefaultClockSkew.
	ClockSkew time.Duration
	// MaxCacheAge bounds caching of answers without nextUpdate; zero means DefaultMaxCacheAge.
	MaxCacheAge time.Duration
	// MaxCRLSize is the largest CRL accepted, in bytes; zero means DefaultMaxCRLSize.
	MaxCRLSize int64
	// CacheDir, when set, keeps fetched CRLs on disk as well (created 0700 as needed).
	CacheDir string
	// NegativeTTL is how long an Unknown result is remembered; zero means
	// DefaultNegativeTTL.
	NegativeTTL time.Duration

	mu        sync.Mutex
	ocspCache map[string]ocspEntry
	unknown   map[string]ocspEntry // recent Unknown results, by ocspKey
	crlCache  map[string]crlEntry
	client    *http.Client
}

type ocspEntry struct {
	result Result
	until  time.Time
}

type crlEntry struct {
	crl   *x509.RevocationList
	until time.Time
}

// Fails reports whether the daemon must treat r as a failure under c's
// policy: always when revoked, and when unknown under HardFail.
func (c *Checker) Fails(r Result) bool {
	switch r.Status {
	case Revoked:
		return true
	case Unknown:
		return c.Policy == HardFail
	}
	return false
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Checker) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.client == nil {
		c.client = &http.Client{Timeout: cmp.Or(c.Timeout, DefaultTimeout)}
	}
	return c.client
}

// Check reports whether cert, issued by issuer, is revoked. It never returns
// Good unless an OCSP responder or a CRL verified against issuer said so, and
// it returns within Checker.Timeout or when ctx ends, whichever is first.
// Under the Off policy it returns NotChecked at once. Whether an Unknown
// result fails the caller's operation is decided by Fails.
func (c *Checker) Check(ctx context.Context, cert, issuer *x509.Certificate) Result {
	if c.Policy == Off {
		return Result{Status: NotChecked, Detail: "revocation checking is off"}
	}
	if cert == nil || issuer == nil {
		return Result{Status: Unknown, Detail: "no certificate or no issuer"}
	}
	if !bytes.Equal(cert.RawIssuer, issuer.RawSubject) {
		return Result{Status: Unknown, Detail: "the issuer given is not the certificate's issuer"}
	}
	key := ocspKey(cert, issuer)
	if r, ok := c.recentUnknown(key); ok {
		return r
	}
	r := c.check(ctx, cert, issuer)
	if r.Status == Unknown && ctx.Err() == nil {
		c.mu.Lock()
		if c.unknown == nil {
			c.unknown = map[string]ocspEntry{}
		}
		c.unknown[key] = ocspEntry{result: r, until: c.now().Add(cmp.Or(c.NegativeTTL, DefaultNegativeTTL))}
		c.mu.Unlock()
	}
	return r
}

// recentUnknown returns the Unknown result remembered for key, if any.
func (c *Checker) recentUnknown(key string) (Result, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.unknown[key]
	if !ok {
		return Result{}, false
	}
	if !now.Before(e.until) {
		delete(c.unknown, key)
		return Result{}, false
	}
	r := e.result
	r.Cached = true
	return r, true
}

// check asks OCSP, then the CRLs, within the time budget.
func (c *Checker) check(ctx context.Context, cert, issuer *x509.Certificate) Result {
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(c.Timeout, DefaultTimeout))
	defer cancel()

	var details []string
	if len(cert.OCSPServer) > 0 {
		octx := ctx
		if len(cert.CRLDistributionPoints) > 0 {
			var ocancel context.CancelFunc
			octx, ocancel = context.WithTimeout(ctx, cmp.Or(c.Timeout, DefaultTimeout)/2)
			defer ocancel()
		}
		r, err := c.checkOCSP(octx, cert, issuer)
		if err == nil {
			return r
		}
		details = append(details, err.Error())
	}
	if len(cert.CRLDistributionPoints) > 0 {
		r, err := c.checkCRL(ctx, cert, issuer)
		if err == nil {
			return r
		}
		details = append(details, err.Error())
	}
	if len(details) == 0 {
		details = append(details, "the certificate names no OCSP responder and no CRL distribution point")
	}
	return Result{Status: Unknown, Detail: strings.Join(details, "; ")}
}

// ---- OCSP ----

var oidOCSPNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

func ocspKey(cert, issuer *x509.Certificate) string {
	return issuerKeyID(issuer) + "/" + cert.SerialNumber.Text(16)
}

func (c *Checker) checkOCSP(ctx context.Context, cert, issuer *x509.Certificate) (Result, error) {
	key := ocspKey(cert, issuer)
	now := c.now()
	c.mu.Lock()
	e, ok := c.ocspCache[key]
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		r := e.result
		r.Cached = true
		return r, nil
	}
	var errs []string
	for _, u := range cert.OCSPServer {
		if !isHTTP(u) {
			errs = append(errs, fmt.Sprintf("ocsp %s: only http(s) responders are supported", u))
			continue
		}
		resp, err := c.queryOCSP(ctx, u, cert, issuer)
		if err != nil {
			errs = append(errs, fmt.Sprintf("ocsp %s: %v", u, err))
			continue
		}
		r := Result{Source: "ocsp " + u}
		switch resp.Status {
		case ocsp.Good:
			r.Status = Good
		case ocsp.Revoked:
			r.Status = Revoked
			r.RevokedAt = resp.RevokedAt
			r.Reason = ReasonName(resp.RevocationReason)
		default:
			errs = append(errs, fmt.Sprintf("ocsp %s: the responder does not know the certificate", u))
			continue
		}
		until := now.Add(cmp.Or(c.MaxCacheAge, DefaultMaxCacheAge))
		if !resp.NextUpdate.IsZero() {
			until = resp.NextUpdate
		}
		c.mu.Lock()
		if c.ocspCache == nil {
			c.ocspCache = make(map[string]ocspEntry)
		}
		c.ocspCache[key] = ocspEntry{result: r, until: until}
		c.mu.Unlock()
		return r, nil
	}
	return Result{}, errors.New(strings.Join(errs, "; "))
}

// Request structures with the requestExtensions field that
// golang.org/x/crypto/ocsp leaves out (RFC 6960 section 4.1.1).
type ocspRequestASN1 struct {
	TBSRequest tbsRequestASN1
}

type tbsRequestASN1 struct {
	Version           int `asn1:"explicit,tag:0,default:0,optional"`
	RequestList       []asn1.RawValue
	RequestExtensions []pkix.Extension `asn1:"explicit,tag:2,optional"`
}

// buildOCSPRequest returns a DER OCSP request for cert carrying nonce in an
// id-pkix-ocsp-nonce extension, and that extension's value.
func buildOCSPRequest(cert, issuer *x509.Certificate, nonce []byte) (der, extValue []byte, err error) {
	plain, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return nil, nil, err
	}
	var req ocspRequestASN1
	if rest, err := asn1.Unmarshal(plain, &req); err != nil || len(rest) > 0 {
		return nil, nil, fmt.Errorf("re-encoding OCSP request: %v", err)
	}
	extValue, err = asn1.Marshal(nonce)
	if err != nil {
		return nil, nil, err
	}
	req.TBSRequest.RequestExtensions = append(req.TBSRequest.RequestExtensions, pkix.Extension{Id: oidOCSPNonce, Value: extValue})
	der, err = asn1.Marshal(req)
	return der, extValue, err
}

// requestNonce returns the nonce extension value of a DER OCSP request.
func requestNonce(der []byte) ([]byte, bool) {
	var req struct {
		TBSRequest struct {
			Version           int              `asn1:"explicit,tag:0,default:0,optional"`
			RequestorName     asn1.RawValue    `asn1:"explicit,tag:1,optional"`
			RequestList       []asn1.RawValue  //
			RequestExtensions []pkix.Extension `asn1:"explicit,tag:2,optional"`
		}
	}
	if _, err := asn1.Unmarshal(der, &req); err != nil {
		return nil, false
	}
	return findExt(req.TBSRequest.RequestExtensions, oidOCSPNonce)
}

// responseNonce returns the nonce extension value of a DER OCSP response's
// responseExtensions, which golang.org/x/crypto/ocsp does not expose.
func responseNonce(der []byte) ([]byte, bool, error) {
	var resp struct {
		Status   asn1.Enumerated
		Response struct {
			Type     asn1.ObjectIdentifier
			Response []byte
		} `asn1:"explicit,tag:0,optional"`
	}
	if _, err := asn1.Unmarshal(der, &resp); err != nil {
		return nil, false, err
	}
	var basic struct {
		TBS struct {
			Version     int `asn1:"optional,default:0,explicit,tag:0"`
			ResponderID asn1.RawValue
			ProducedAt  time.Time `asn1:"generalized"`
			Responses   []asn1.RawValue
			Extensions  []pkix.Extension `asn1:"explicit,tag:1,optional"`
		}
		Rest []asn1.RawValue `asn1:"optional"`
	}
	if _, err := asn1.Unmarshal(resp.Response.Response, &basic); err != nil {
		return nil, false, err
	}
	v, ok := findExt(basic.TBS.Extensions, oidOCSPNonce)
	return v, ok, nil
}

func findExt(exts []pkix.Extension, id asn1.ObjectIdentifier) ([]byte, bool) {
	for _, e := range exts {
		if e.Id.Equal(id) {
			return e.Value, true
		}
	}
	return nil, false
}

func (c *Checker) queryOCSP(ctx context.Context, u string, cert, issuer *x509.Certificate) (*ocsp.Response, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	reqDER, nonceExt, err := buildOCSPRequest(cert, issuer, nonce)
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(reqDER))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/ocsp-request")
	hreq.Header.Set("Accept", "application/ocsp-response")
	body, err := c.get(hreq, maxOCSPResponse)
	if err != nil {
		return nil, err
	}
	resp, err := parseOCSPResponse(body, cert, issuer)
	if err != nil {
		return nil, err
	}
	now := c.now()
	if rc := resp.Certificate; rc != nil && !rc.Equal(issuer) {
		// parseOCSPResponse checked that issuer signed rc and rc signed the response.
		delegated := false
		for _, eku := range rc.ExtKeyUsage {
			if eku == x509.ExtKeyUsageOCSPSigning {
				delegated = true
			}
		}
		if !delegated {
			return nil, errors.New("the responder certificate lacks id-kp-OCSPSigning")
		}
		if now.Before(rc.NotBefore) || now.After(rc.NotAfter) {
			return nil, errors.New("the responder certificate is not valid now")
		}
	}
	got, echoed, err := responseNonce(body)
	if err != nil {
		return nil, fmt.Errorf("reading response extensions: %v", err)
	}
	if echoed && !bytes.Equal(got, nonceExt) {
		return nil, errors.New("nonce mismatch (replayed response?)")
	}
	skew := cmp.Or(c.ClockSkew, DefaultClockSkew)
	if resp.ThisUpdate.After(now.Add(skew)) {
		return nil, fmt.Errorf("response not yet valid (thisUpdate %s)", resp.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !resp.NextUpdate.IsZero() && now.After(resp.NextUpdate.Add(skew)) {
		return nil, fmt.Errorf("stale response (nextUpdate %s)", resp.NextUpdate.UTC().Format(time.RFC3339))
	}
	return resp, nil
}

// parseOCSPResponse parses the response about cert and checks its
// signature: by issuer itself, or by a responder certificate included in the
// response that issuer signed. A response signed by the issuer that also
// includes the issuer's own certificate is common (openssl ocsp -rsigner
// with the CA); ocsp.ParseResponseForCert would then check that the issuer
// signed itself, which holds only for a root, so signatures are checked here.
func parseOCSPResponse(body []byte, cert, issuer *x509.Certificate) (*ocsp.Response, error) {
	resp, err := ocsp.ParseResponseForCert(body, cert, nil)
	if err != nil {
		return nil, err
	}
	signer := issuer
	if rc := resp.Certificate; rc != nil && !rc.Equal(issuer) {
		if err := rc.CheckSignatureFrom(issuer); err != nil {
			return nil, fmt.Errorf("bad OCSP signature: the responder certificate was not issued by the certificate's issuer: %w", err)
		}
		signer = rc
	}
	if err := resp.CheckSignatureFrom(signer); err != nil {
		return nil, fmt.Errorf("bad OCSP signature: %w", err)
	}
	return resp, nil
}

// get performs req and returns a 200 response's body of at most limit bytes.
func (c *Checker) get(req *http.Request, limit int64) ([]byte, error) {
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("response larger than %d bytes", limit)
	}
	return body, nil
}

func isHTTP(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "http" || p.Scheme == "https") && p.Host != ""
}

// ---- CRL ----

func (c *Checker) checkCRL(ctx context.Context, cert, issuer *x509.Certificate) (Result, error) {
	var errs []string
	for _, u := range cert.CRLDistributionPoints {
		if !isHTTP(u) && !isLDAP(u) {
			errs = append(errs, fmt.Sprintf("crl %s: unsupported URL scheme", u))
			continue
		}
		crl, cached, err := c.getCRL(ctx, u, issuer)
		if err != nil {
			errs = append(errs, fmt.Sprintf("crl %s: %v", u, err))
			continue
		}
		r := Result{Status: Good, Source: "crl " + u, Cached: cached}
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				r.Status = Revoked
				r.RevokedAt = e.RevocationTime
				r.Reason = ReasonName(e.ReasonCode)
				break
			}
		}
		return r, nil
	}
	return Result{}, errors.New(strings.Join(errs, "; "))
}

func isLDAP(u string) bool {
	p, err := url.Parse(u)
	return err == nil && (p.Scheme == "ldap" || p.Scheme == "ldaps") && p.Host != ""
}

// fetchLDAP reads a CRL from an RFC 4516 LDAP URL
// (ldap://host:port/<dn>?<attribute>), anonymously, with a base-object
// search for the attribute (certificateRevocationList;binary when the URL
// names none). The search ends when ctx does.
func (c *Checker) fetchLDAP(ctx context.Context, u string) ([]byte, error) {
	p, err := url.Parse(u)
	if err != nil {
		return nil, err
	}
	attr, _, _ := strings.Cut(p.RawQuery, "?")
	if attr, err = url.QueryUnescape(attr); err != nil {
		return nil, err
	}
	if attr == "" {
		attr = "certificateRevocationList;binary"
	}
	dn := strings.TrimPrefix(p.Path, "/")
	var d net.Dialer
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	conn, err := ldap.DialURL(p.Scheme+"://"+p.Host, ldap.DialWithDialer(&d))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetTimeout(time.Until(dl))
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	res, err := conn.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases,
		1, 0, false, "(objectClass=*)", []string{attr}, nil))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	base, _, _ := strings.Cut(attr, ";")
	for _, e := range res.Entries {
		for _, a := range e.Attributes {
			name, _, _ := strings.Cut(a.Name, ";")
			if !strings.EqualFold(name, base) {
				continue
			}
			for _, v := range a.ByteValues {
				if int64(len(v)) > cmp.Or(c.MaxCRLSize, DefaultMaxCRLSize) {
					return nil, fmt.Errorf("CRL larger than %d bytes", cmp.Or(c.MaxCRLSize, DefaultMaxCRLSize))
				}
				return v, nil
			}
		}
	}
	return nil, fmt.Errorf("no %s attribute at %q", attr, dn)
}

func (c *Checker) cachePath(u string) string {
	sum := sha256.Sum256([]byte(u))
	return filepath.Join(c.CacheDir, hex.EncodeToString(sum[:])+".crl")
}

// getCRL returns a verified, current CRL for u from memory, disk or the network.
func (c *Checker) getCRL(ctx context.Context, u string, issuer *x509.Certificate) (*x509.RevocationList, bool, error) {
	now := c.now()
	key := u + "|" + issuerKeyID(issuer)
	c.mu.Lock()
	e, ok := c.crlCache[key]
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.crl, true, nil
	}
	if c.CacheDir != "" {
		if der, err := os.ReadFile(c.cachePath(u)); err == nil {
			if crl, err := c.verifyCRL(der, issuer, now); err == nil && !crl.NextUpdate.IsZero() && now.Before(crl.NextUpdate) {
				c.remember(key, crl, crl.NextUpdate)
				return crl, true, nil
			}
		}
	}
	var body []byte
	var err error
	if isLDAP(u) {
		body, err = c.fetchLDAP(ctx, u)
	} else {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err == nil {
			body, err = c.get(req, cmp.Or(c.MaxCRLSize, DefaultMaxCRLSize))
		}
	}
	if err != nil {
		return nil, false, err
	}
	crl, err := c.verifyCRL(body, issuer, now)
	if err != nil {
		return nil, false, err
	}
	until := now.Add(cmp.Or(c.MaxCacheAge, DefaultMaxCacheAge))
	if !crl.NextUpdate.IsZero() {
		until = crl.NextUpdate
	}
	c.remember(key, crl, until)
	if c.CacheDir != "" {
		// A failed disk write only costs a later re-fetch.
		_ = c.writeCache(u, crl.Raw)
	}
	return crl, false, nil
}

// issuerKeyID identifies an issuer by the hash of its name and key.
func issuerKeyID(issuer *x509.Certificate) string {
	h := sha256.New()
	h.Write(issuer.RawSubject)
	h.Write(issuer.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h.Sum(nil))
}

func (c *Checker) remember(key string, crl *x509.RevocationList, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crlCache == nil {
		c.crlCache = make(map[string]crlEntry)
	}
	c.crlCache[key] = crlEntry{crl: crl, until: until}
}

func (c *Checker) writeCache(u string, der []byte) error {
	if err := os.MkdirAll(c.CacheDir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(c.CacheDir, ".crl-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(der)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, c.cachePath(u))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// verifyCRL parses data (DER or PEM) and checks issuer, signature and currency.
func (c *Checker) verifyCRL(data []byte, issuer *x509.Certificate, now time.Time) (*x509.RevocationList, error) {
	if b, _ := pem.Decode(data); b != nil && b.Type == "X509 CRL" {
		data = b.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("parsing CRL: %v", err)
	}
	if !bytes.Equal(crl.RawIssuer, issuer.RawSubject) {
		return nil, errors.New("CRL issuer is not the certificate's issuer")
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		return nil, fmt.Errorf("bad signature: %v", err)
	}
	skew := cmp.Or(c.ClockSkew, DefaultClockSkew)
	if crl.ThisUpdate.After(now.Add(skew)) {
		return nil, fmt.Errorf("CRL not yet valid (thisUpdate %s)", crl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate.Add(skew)) {
		return nil, fmt.Errorf("CRL expired (nextUpdate %s)", crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	return crl, nil
}

// ReasonName returns the RFC 5280 CRLReason name for code, e.g.
// "keyCompromise"; unassigned codes are spelt "reason(N)".
func ReasonName(code int) string {
	switch code {
	case 0:
		return "unspecified"
	case 1:
		return "keyCompromise"
	case 2:
		return "cACompromise"
	case 3:
		return "affiliationChanged"
	case 4:
		return "superseded"
	case 5:
		return "cessationOfOperation"
	case 6:
		return "certificateHold"
	case 8:
		return "removeFromCRL"
	case 9:
		return "privilegeWithdrawn"
	case 10:
		return "aACompromise"
	}
	return fmt.Sprintf("reason(%d)", code)
}
