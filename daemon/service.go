// Package daemon is smimed's policy and wiring: it implements ipc.Service
// over the S/MIME engine (smime), the key store (keystore), the address book
// and trust anchors (daemon/certbook), the configuration (daemon/config) and
// the audit trail (daemon/audit).
//
// It decides which identity signs (by the From address, or an explicit ID),
// which certificates a message is encrypted to (the address book, plus the
// sender's own certificate so the sent copy stays readable), which key opens
// a message (the identity a RecipientInfo names: only then is the user
// asked for its passphrase, once per private-key operation), what is
// audited (one line per private-key operation), and which error name a
// client sees. It holds no lock around operations: requests for different
// identities run in parallel, and only the prompts queue (prompt.Serialized).
//
// The transports (ipc/dbus) call a *Service; cmd/smimed builds one with New.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/daemon/aia"
	"github.com/smimed/smimed/daemon/audit"
	"github.com/smimed/smimed/daemon/certbook"
	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/daemon/directory"
	"github.com/smimed/smimed/daemon/revocation"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/keystore"
	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/tokens"
)

// The daemon implements the contract.
var _ ipc.Service = (*Service)(nil)

// Notifier is told when the user's identities or the stored certificates
// change, so that it can tell clients (the D-Bus server emits
// IdentitiesChanged and CertificatesChanged).
type Notifier interface {
	EmitIdentitiesChanged() error
	EmitCertificatesChanged() error
}

// Options configure New. Every field has a default.
type Options struct {
	// Config is the configuration in effect; config.Default() when nil.
	Config *config.Config
	// Bus is the session bus, used for the Secret Service key store
	// backend; nil means no Secret Service (keystore.backend "auto" then
	// picks the file vault).
	Bus *dbus.Conn
	// Vault overrides keystore.backend with a vault opened by the caller;
	// the Service owns it from then on.
	Vault keystore.Vault
	// DataDir holds the file vault (keys/), the trust anchors (trust/) and
	// the address book (certs/); $XDG_DATA_HOME/smimed when empty.
	DataDir string
	// AuditPath is the audit file; $XDG_STATE_HOME/smimed/audit.log when
	// empty.
	AuditPath string
	// SpoolDir is where AES-GCM ciphertext waits while its tag is checked;
	// $XDG_RUNTIME_DIR/smimed when XDG_RUNTIME_DIR is set, else the
	// system's temporary directory.
	SpoolDir string
	// CacheDir holds what may be lost: fetched CRLs and intermediate CA
	// certificates; $XDG_CACHE_HOME/smimed when empty.
	CacheDir string
	// Env is the session environment the pinentry runs with (DISPLAY,
	// SMIMED_PINENTRY, PATH, ...); os.Environ() when nil.
	Env []string
	// Logger receives the daemon's records (never message content, PINs
	// or passphrases); discarded when nil.
	Logger *slog.Logger
	// Version is reported by Status.
	Version string
	// Tokens is the base of the token manager's options (tests point
	// P11Kit at temporary directories, set WorkerEnv and PollInterval);
	// the daemon sets Prompter, CachePIN and Logger, and adds
	// tokens.modules to Modules. Ignored when tokens.enabled is false.
	Tokens tokens.Options
}

// Service is smimed's implementation of ipc.Service. It is safe for
// concurrent use.
type Service struct {
	cfg      *config.Config
	store    *keystore.Store
	tokens   *tokens.Manager // nil when tokens.enabled is false
	book     *certbook.Book
	issuers  *certbook.Issuers    // intermediate CAs learnt or fetched
	revoker  *revocation.Checker  // OCSP and CRL checks, per revocation.policy
	aia      *aia.Fetcher         // AIA caIssuers fetching, per trust.fetch_issuers
	dir      *directory.Directory // nil when no LDAP directory is configured
	audit    *audit.Log
	logger   *slog.Logger
	version  string
	spoolDir string
	started  time.Time

	notifier atomic.Pointer[notifierBox]

	stopWatch context.CancelFunc
	watchDone chan struct{}

	mu sync.Mutex
	// wrong holds the identities whose last private-key operation failed
	// with a wrong passphrase: their next prompt says so.
	wrong map[string]bool
	// tokIDs holds the token identities last listed, by ID.
	tokIDs map[string]tokens.Identity
}

type notifierBox struct{ n Notifier }

// New opens the key store, the address book and the audit trail that the
// configuration names, and returns the service. Close releases them.
func New(ctx context.Context, opts Options) (_ *Service, err error) {
	cfg := opts.Config
	if cfg == nil {
		cfg = config.Default()
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dataDir := opts.DataDir
	if dataDir == "" {
		if dataDir, err = certbook.DefaultDir(); err != nil {
			return nil, err
		}
	}
	var closers []func() error
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				_ = closers[i]()
			}
		}
	}()

	vault := opts.Vault
	if vault == nil {
		if vault, err = OpenVault(ctx, cfg.Keystore.Backend, opts.Bus, filepath.Join(dataDir, "keys"), logger); err != nil {
			return nil, err
		}
	}
	env := opts.Env
	if env == nil {
		env = os.Environ()
	}
	prompter := NewPrompter(cfg.Prompt.Program, env, cfg.Prompt.AllowAgents, logger)
	store, err := keystore.Open(ctx, keystore.Options{
		Vault:    vault,
		Prompter: prompter,
		CacheTTL: cfg.Keystore.CacheTTL,
		Logger:   logger,
	})
	if err != nil {
		_ = vault.Close()
		return nil, fmt.Errorf("daemon: open the key store: %w", err)
	}
	closers = append(closers, store.Close)

	toks, err := openTokens(cfg, opts.Tokens, prompter, logger)
	if err != nil {
		return nil, fmt.Errorf("daemon: open the token manager: %w", err)
	}
	if toks != nil {
		closers = append(closers, toks.Close)
	}

	book, err := certbook.Open(dataDir, logger)
	if err != nil {
		return nil, err
	}
	var dir *directory.Directory
	if len(cfg.Directory.LDAP) > 0 {
		// Anonymous binds, or simple binds as the URL's bindname with the
		// password from the key store, never from the config file.
		if dir, err = directory.New(directory.Options{Servers: cfg.Directory.LDAP,
			Credentials: directoryCredentials(store, logger)}); err != nil {
			return nil, fmt.Errorf("daemon: directory: %w", err)
		}
	}
	issuers, revoker, fetcher, err := openCertServices(cfg, opts.CacheDir)
	if err != nil {
		return nil, err
	}
	auditLog, err := audit.Open(audit.Options{Path: opts.AuditPath, Syslog: cfg.Audit.Syslog, Logger: logger})
	if err != nil {
		return nil, err
	}
	closers = append(closers, auditLog.Close)

	spool := opts.SpoolDir
	if spool == "" {
		spool = defaultSpoolDir()
	}
	if spool != "" {
		if err = os.MkdirAll(spool, 0o700); err != nil {
			return nil, fmt.Errorf("daemon: spool directory: %w", err)
		}
	}
	for _, w := range cfg.Warnings {
		logger.Warn("config: " + w)
	}
	logger.Info("daemon ready",
		"keystore", store.Backend(),
		"data_dir", dataDir,
		"audit", auditLog.Path(),
		"config", cfg.UserFile, "config_loaded", cfg.UserFileLoaded,
		"policy", cfg.PolicyFile, "policy_loaded", cfg.PolicyFileLoaded,
		"max_message_bytes", cfg.Limits.MaxMessageBytes,
		"cache_ttl", cfg.Keystore.CacheTTL.String(),
		"allow_agents", cfg.Prompt.AllowAgents,
		"allow_modern", cfg.Crypto.AllowModern,
		"default_hash", config.HashName(cfg.Crypto.DefaultHash),
		"tokens", cfg.Tokens.Enabled, "cache_pin", cfg.Tokens.CachePIN.String(),
		"revocation", cfg.Revocation.Policy, "fetch_issuers", cfg.Trust.FetchIssuers,
		"system_roots", cfg.Trust.SystemRoots, "user_anchors", cfg.Trust.UserAnchors, "directories", len(cfg.Directory.LDAP))
	s := &Service{
		cfg:      cfg,
		store:    store,
		tokens:   toks,
		book:     book,
		issuers:  issuers,
		revoker:  revoker,
		aia:      fetcher,
		dir:      dir,
		audit:    auditLog,
		logger:   logger,
		version:  opts.Version,
		spoolDir: spool,
		started:  time.Now(),
		wrong:    map[string]bool{},
	}
	if toks != nil {
		wctx, cancel := context.WithCancel(context.Background())
		s.stopWatch, s.watchDone = cancel, make(chan struct{})
		go s.watchTokens(wctx)
	}
	return s, nil
}

// defaultSpoolDir is $XDG_RUNTIME_DIR/smimed (a tmpfs private to the user on
// systemd systems), or "" for the system's temporary directory.
func defaultSpoolDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(d) {
		return filepath.Join(d, "smimed")
	}
	return ""
}

// SetNotifier sets who is told about changes (the D-Bus server, once it
// exists); nil stops notifications.
func (s *Service) SetNotifier(n Notifier) {
	if n == nil {
		s.notifier.Store(nil)
		return
	}
	s.notifier.Store(&notifierBox{n})
}

func (s *Service) identitiesChanged() {
	if b := s.notifier.Load(); b != nil {
		if err := b.n.EmitIdentitiesChanged(); err != nil {
			s.logger.Warn("cannot signal IdentitiesChanged", "err", err)
		}
	}
}

func (s *Service) certificatesChanged() {
	if b := s.notifier.Load(); b != nil {
		if err := b.n.EmitCertificatesChanged(); err != nil {
			s.logger.Warn("cannot signal CertificatesChanged", "err", err)
		}
	}
}

// Config returns the configuration in effect.
func (s *Service) Config() *config.Config { return s.cfg }

// Close closes the key store (zeroing cached keys), the token manager
// (stopping its workers, zeroing cached PINs) and the audit trail.
// Requests still running fail afterwards; the transport stops them first.
func (s *Service) Close() error {
	var tokErr error
	if s.tokens != nil {
		s.stopWatch()
		tokErr = s.tokens.Close()
		<-s.watchDone
	}
	return errors.Join(s.store.Close(), tokErr, s.audit.Close())
}

// statusListTimeout bounds the identity count in Status, so that a locked
// Secret Service collection cannot hold `smimectl status` at its unlock
// prompt.
const statusListTimeout = 3 * time.Second

// Status reports the daemon's state.
func (s *Service) Status(ctx context.Context) (ipc.DaemonStatus, error) {
	lctx, cancel := context.WithTimeout(ctx, statusListTimeout)
	defer cancel()
	n, nt := 0, 0
	if ids, err := s.identities(lctx); err != nil {
		s.logger.Warn("status: cannot count identities", "err", err)
	} else {
		n = len(ids)
	}
	if toks, err := s.Tokens(lctx); err == nil {
		nt = len(toks)
	}
	return ipc.DaemonStatus{
		Version:    s.version,
		PID:        os.Getpid(),
		Keystore:   s.store.Backend(),
		Identities: n,
		Tokens:     nt,
		Config:     s.cfg.UserFile,
		Uptime:     time.Since(s.started).Round(time.Second).String(),
	}, nil
}

// Identities lists the user's identities: the key store's and those on the
// tokens present (Source "token:<label>"). A damaged entry in the key store
// is logged and left out; it does not hide the others, and a failing
// PKCS#11 module hides only its own tokens.
func (s *Service) Identities(ctx context.Context) ([]ipc.Identity, error) {
	ids, err := s.identities(ctx)
	if err != nil {
		return nil, s.fail(ctx, "identities", err)
	}
	out := make([]ipc.Identity, 0, len(ids))
	for _, id := range ids {
		out = append(out, identityInfo(id))
	}
	return out, nil
}

// ImportPKCS12 imports a PKCS #12 file into the key store. A nil password
// is asked through the prompter; a given one is wiped (the slice is
// zeroed) once used. The key's new passphrase is always asked, twice.
// The import is audited (operation "import", digest of the file).
func (s *Service) ImportPKCS12(ctx context.Context, data, password []byte) (ipc.Identity, error) {
	var pw *prompt.Secret
	if password != nil {
		pw = prompt.NewSecret(password)
		clear(password)
	}
	defer pw.Wipe()
	if int64(len(data)) > s.cfg.Limits.MaxMessageBytes {
		return ipc.Identity{}, s.fail(ctx, "import", s.tooLarge())
	}
	in := newInput(bytesReader(data), s.cfg.Limits.MaxMessageBytes)
	in.drain(ctx)
	ident, err := s.store.ImportPKCS12(ctx, data, pw, keystore.ImportOptions{})
	var who *keystore.Identity
	if err == nil {
		who = &ident
	}
	s.record(ctx, audit.OpImport, who, in, err)
	if err != nil {
		return ipc.Identity{}, s.fail(ctx, "import", err)
	}
	s.identitiesChanged()
	return identityInfo(ident), nil
}

// identities lists the key store's identities (damaged entries are logged
// and skipped), then the tokens' (Backend "token:<label>"). A certificate
// both in the key store and on a token is the key store's.
func (s *Service) identities(ctx context.Context) ([]keystore.Identity, error) {
	ids, err := s.store.Identities(ctx)
	if err != nil {
		if !errors.Is(err, keystore.ErrCorrupt) || errors.Is(err, keystore.ErrLocked) ||
			errors.Is(err, keystore.ErrClosed) || errors.Is(err, keystore.ErrUnavailable) {
			return nil, err
		}
		s.logger.Warn("key store: unreadable entries skipped", "err", err)
	}
	if s.tokens == nil {
		return ids, nil
	}
	have := make(map[string]bool, len(ids))
	for _, id := range ids {
		have[id.ID] = true
	}
	for _, t := range s.tokenIdentities(ctx) {
		if !have[t.ID] {
			have[t.ID] = true
			ids = append(ids, fromToken(t))
		}
	}
	return ids, nil
}

// promptRequest fills the prompt text for a private-key operation on id,
// saying so when the previous attempt had a wrong passphrase.
func (s *Service) promptRequest(id keystore.Identity, r prompt.Request) prompt.Request {
	r.KeyLabel = id.Label
	s.mu.Lock()
	if s.wrong[id.ID] {
		r.Error = "Wrong passphrase, try again"
	}
	s.mu.Unlock()
	return r
}

// noteOutcome remembers whether the identity's last operation failed with
// a wrong passphrase.
func (s *Service) noteOutcome(id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errors.Is(err, keystore.ErrWrongPassphrase) {
		s.wrong[id] = true
	} else if err == nil {
		delete(s.wrong, id)
	}
}

// record writes the audit line for one private-key operation; a failure to
// write it is logged (the operation has already happened).
func (s *Service) record(ctx context.Context, op string, id *keystore.Identity, in *input, opErr error) {
	caller, _ := ipc.CallerFrom(ctx)
	e := audit.Entry{
		CallerPID:     caller.PID,
		CallerExe:     caller.Exe,
		CallerUID:     caller.UID,
		CallerName:    caller.Name,
		Operation:     op,
		MessageDigest: in.digest(),
		MessageBytes:  in.n,
		Partial:       !in.eof,
		Outcome:       outcomeOf(s.mapError(opErr)),
	}
	if id != nil {
		e.Identity = audit.Identity{ID: id.ID, Subject: id.Certificate.Subject.String()}
	}
	if err := s.audit.Record(e); err != nil {
		s.logger.Error("audit: cannot write the audit line", "err", err, "operation", op)
	}
}

// outcomeOf names an operation's result for the audit trail.
func outcomeOf(err error) string {
	if err == nil {
		return audit.OutcomeOK
	}
	switch name := ipc.NameOf(err); name {
	case ipc.Cancelled:
		return audit.OutcomeCancelled
	case ipc.PinIncorrect:
		return audit.OutcomeWrongPassphrase
	default:
		return "error:" + string(name)
	}
}
