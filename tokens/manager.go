package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/tokens/internal/wire"
	"github.com/smimed/smimed/tokens/p11kit"
)

// Defaults for Options.
const (
	DefaultCallTimeout   = 30 * time.Second
	DefaultPINPadTimeout = 2 * time.Minute
	DefaultPollInterval  = time.Second
)

// Options configure a Manager. The zero value (plus a Prompter) uses the
// desktop's p11-kit modules, re-executes the running program as worker,
// and caches no PIN.
type Options struct {
	// Modules are module paths from smimed's own configuration, used in
	// addition to p11-kit's. A relative path is resolved like p11-kit's
	// "module:" field.
	Modules []string
	// P11Kit says where p11-kit's module configuration lives (tests point
	// it at temporary directories). Program defaults to "smimed".
	P11Kit p11kit.Options
	// NoP11Kit ignores p11-kit's configuration: only Modules are used.
	NoP11Kit bool

	// Prompter asks for PINs and shows PIN-pad notices (the daemon's,
	// wrapped in prompt.Serialized). Without one, operations fail with
	// prompt.ErrNoPrompter.
	Prompter prompt.Prompter
	// Logger receives debug and warning messages; slog.Default() when nil.
	// No PIN, plaintext or shared secret is ever logged.
	Logger *slog.Logger

	// WorkerCommand starts a worker; the module path is appended. The
	// default is {os.Executable(), WorkerArg} (see WorkerMain), executed
	// from /proc/self/exe on Linux: the running binary, even when a
	// package upgrade has replaced the file since.
	WorkerCommand []string
	// WorkerEnv is added to the daemon's environment for the workers
	// (e.g. SOFTHSM2_CONF in tests).
	WorkerEnv []string

	// CallTimeout bounds every call into a module that does not wait for
	// the user (listing, signing, decrypting); a module that takes longer
	// is taken for hung: its worker is killed and the call fails with
	// ErrModuleFailed. Default DefaultCallTimeout.
	CallTimeout time.Duration
	// PINPadTimeout bounds an operation that waits for the PIN to be
	// typed on the reader. Default DefaultPINPadTimeout.
	PINPadTimeout time.Duration
	// PollInterval is how often Watch asks the modules which tokens are
	// present. Default DefaultPollInterval.
	PollInterval time.Duration
	// RescanInterval is how often a module is re-initialised (C_Finalize
	// + C_Initialize, only while no operation runs in it) so that modules
	// such as SoftHSM, which read their tokens only at initialisation,
	// show new ones. Zero means PollInterval; negative never.
	RescanInterval time.Duration
	// CachePIN keeps a token's PIN, after it logged in successfully, for
	// this long (not sliding), so that operations within it do not
	// prompt. Zero (the default) caches nothing: every operation asks. A
	// wrong PIN, a locked PIN, the token's removal and Close drop the
	// cached PIN and zero it.
	CachePIN time.Duration
}

// Manager finds PKCS#11 tokens and the identities on them, and performs
// private-key operations with them, one PIN per operation. Each module
// runs in its own worker process. A Manager is safe for concurrent use.
type Manager struct {
	o       Options
	log     *slog.Logger
	argv    []string // worker command; the module path is appended
	exePath string   // what to execute for argv[0] ("/proc/self/exe" by default on Linux)
	modules []*module
	byPath  map[string]*module
	confErr error

	closed    chan struct{}
	closeOnce sync.Once
	bg        sync.WaitGroup

	mu         sync.Mutex
	tokenLocks map[string]chan struct{}
	lastFailed map[string]bool
	pins       map[string]*cachedPIN
}

// Open prepares a Manager: it reads the module configuration but starts
// no worker; modules are started on first use. Configuration files that
// cannot be read are logged and reported by Modules.
func Open(o Options) (*Manager, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.PINPadTimeout <= 0 {
		o.PINPadTimeout = DefaultPINPadTimeout
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	if o.RescanInterval == 0 {
		o.RescanInterval = o.PollInterval
	}
	argv := o.WorkerCommand
	exePath := ""
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("tokens: cannot find the program to run workers: %w", err)
		}
		argv = []string{exe, WorkerArg}
		// The running binary itself, even when a package upgrade has
		// replaced the file since: daemon and worker speak the same
		// protocol version.
		if _, err := os.Stat("/proc/self/exe"); err == nil {
			exePath = "/proc/self/exe"
		}
	}
	m := &Manager{
		o:          o,
		log:        o.Logger,
		argv:       argv,
		exePath:    exePath,
		byPath:     map[string]*module{},
		closed:     make(chan struct{}),
		tokenLocks: map[string]chan struct{}{},
		lastFailed: map[string]bool{},
		pins:       map[string]*cachedPIN{},
	}
	if !o.NoP11Kit {
		res, err := p11kit.Load(o.P11Kit)
		if err != nil {
			m.confErr = err
			m.log.Warn("tokens: p11-kit configuration", "err", err)
		}
		for _, s := range res.Skipped {
			m.log.Debug("tokens: module skipped", "module", s.Name, "reason", s.Reason, "files", s.Files)
		}
		for _, mod := range res.Modules {
			m.addModule(mod.Name, mod.Path, mod.Files)
		}
	}
	for _, path := range o.Modules {
		abs := p11kit.Resolve(path, o.P11Kit.ModuleDir)
		m.addModule(abs, abs, []string{"smimed configuration"})
	}
	return m, nil
}

// addModule adds a module unless one with the same library (after
// symbolic links) is there already.
func (m *Manager) addModule(name, path string, files []string) {
	key := path
	if real, err := filepath.EvalSymlinks(path); err == nil {
		key = real
	}
	if prev, ok := m.byPath[key]; ok {
		m.log.Debug("tokens: module configured twice", "module", name, "same_as", prev.name, "path", path)
		m.byPath[path] = prev
		return
	}
	md := &module{m: m, name: name, path: path, files: files, gate: make(chan struct{}, 1)}
	m.modules = append(m.modules, md)
	m.byPath[key] = md
	m.byPath[path] = md
}

// Close stops every worker (finalising its module), zeroes cached PINs
// and ends Watch channels. Handles fail with ErrClosed afterwards.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		close(m.closed)
		m.mu.Unlock()
		var wg sync.WaitGroup
		for _, md := range m.modules {
			wg.Add(1)
			go func() {
				defer wg.Done()
				md.shutdown()
			}()
		}
		wg.Wait()
		m.mu.Lock()
		for id, c := range m.pins {
			c.wipe()
			delete(m.pins, id)
		}
		m.mu.Unlock()
		m.bg.Wait()
	})
	return nil
}

func (m *Manager) isClosed() bool {
	select {
	case <-m.closed:
		return true
	default:
		return false
	}
}

// ModuleStatus describes a configured module.
type ModuleStatus struct {
	// Name is the p11-kit config name, or the path for modules from
	// smimed's configuration.
	Name string
	// Path is the library.
	Path string
	// Files are the configuration files that named it.
	Files []string
	// Description, Manufacturer and Version come from C_GetInfo once the
	// module runs.
	Description, Manufacturer, Version string
	// Err is why the module cannot be used (ErrModuleNotFound,
	// ErrModuleFailed), nil when it runs.
	Err error
}

// Modules starts every module (if not running) and reports its state. The
// error is the configuration's, if any file could not be read.
func (m *Manager) Modules(ctx context.Context) ([]ModuleStatus, error) {
	out := make([]ModuleStatus, len(m.modules))
	var wg sync.WaitGroup
	for i, md := range m.modules {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := ModuleStatus{Name: md.name, Path: md.path, Files: md.files}
			info, err := md.start(ctx)
			if err != nil {
				st.Err = err
			} else {
				st.Description, st.Manufacturer, st.Version = info.Description, info.Manufacturer, info.LibraryVersion
			}
			out[i] = st
		}()
	}
	wg.Wait()
	return out, m.confErr
}

// PINState is what a token says about its user PIN.
type PINState string

// PIN states, from CKF_USER_PIN_* token flags.
const (
	PINOK       PINState = "ok"
	PINCountLow PINState = "count-low"
	PINFinalTry PINState = "final-try"
	PINLocked   PINState = "locked"
)

func pinState(flags uint) PINState {
	switch {
	case flags&wire.CKF_USER_PIN_LOCKED != 0:
		return PINLocked
	case flags&wire.CKF_USER_PIN_FINAL_TRY != 0:
		return PINFinalTry
	case flags&wire.CKF_USER_PIN_COUNT_LOW != 0:
		return PINCountLow
	}
	return PINOK
}

// Token is a token that is present (an inserted card, a USB token, a
// SoftHSM token).
type Token struct {
	// ID identifies the token across slots and restarts: a hash of the
	// module path, manufacturer, model, serial number and label.
	ID string
	// Label, Manufacturer, Model and Serial come from C_GetTokenInfo.
	Label, Manufacturer, Model, Serial string
	// Module is the module's library path; ModuleName its name.
	Module, ModuleName string
	// Slot is the slot the token was seen in; it may change.
	Slot uint
	// SlotDescription describes the slot (often the reader's name).
	SlotDescription string
	// PINState is ok, count-low, final-try or locked.
	PINState PINState
	// PINPad is true when the reader has a protected authentication path:
	// the PIN is typed on the reader, not in a prompt.
	PINPad bool
	// LoginRequired is false for tokens that need no PIN at all.
	LoginRequired bool

	ref wire.TokenRef
}

func newToken(md *module, s wire.Slot) Token {
	t := s.Token
	h := sha256.Sum256([]byte(md.path + "\x00" + t.Manufacturer + "\x00" + t.Model + "\x00" + t.Serial + "\x00" + t.Label))
	return Token{
		ID:              hex.EncodeToString(h[:16]),
		Label:           t.Label,
		Manufacturer:    t.Manufacturer,
		Model:           t.Model,
		Serial:          t.Serial,
		Module:          md.path,
		ModuleName:      md.name,
		Slot:            s.ID,
		SlotDescription: s.Description,
		PINState:        pinState(t.Flags),
		PINPad:          t.Flags&wire.CKF_PROTECTED_AUTHENTICATION_PATH != 0,
		LoginRequired:   t.Flags&wire.CKF_LOGIN_REQUIRED != 0,
		ref:             t.TokenRef,
	}
}

// Tokens lists the initialised tokens present in every module. Modules
// that fail (not found, hung, crashed) are reported in the error, one
// *ModuleError each joined with errors.Join; the other modules' tokens are
// returned all the same.
func (m *Manager) Tokens(ctx context.Context) ([]Token, error) {
	if m.isClosed() {
		return nil, ErrClosed
	}
	return eachModule(m.modules, func(md *module) ([]Token, error) { return md.tokens(ctx) })
}

// eachModule runs list on every module at once (a hung module costs its
// own timeout, not the others') and joins the results and the errors.
func eachModule[T any](modules []*module, list func(*module) ([]T, error)) ([]T, error) {
	results := make([][]T, len(modules))
	errs := make([]error, len(modules))
	var wg sync.WaitGroup
	for i, md := range modules {
		wg.Go(func() { results[i], errs[i] = list(md) })
	}
	wg.Wait()
	var out []T
	for _, r := range results {
		out = append(out, r...)
	}
	return out, errors.Join(errs...)
}

// rescanAfterMS is the RescanAfterMS to send with a slots request.
func (m *Manager) rescanAfterMS() int64 {
	if m.o.RescanInterval < 0 {
		return 0
	}
	return max(m.o.RescanInterval.Milliseconds(), 1)
}

// module is one PKCS#11 module and its worker process.
type module struct {
	m     *Manager
	name  string
	path  string
	files []string
	gate  chan struct{} // held while a worker is being started

	mu       sync.Mutex
	p        *proc
	info     *wire.ModuleInfo
	failures int // consecutive failed starts
	retryAt  time.Time
	lastErr  error
}

// moduleErr wraps err as this module's *ModuleError.
func (md *module) moduleErr(err error) error {
	if err == nil {
		return nil
	}
	var me *ModuleError
	if errors.As(err, &me) {
		return err
	}
	return &ModuleError{Module: md.name, Path: md.path, Err: err}
}

// start returns the running worker's module info, starting the worker if
// needed.
func (md *module) start(ctx context.Context) (*wire.ModuleInfo, error) {
	_, info, err := md.worker(ctx)
	return info, md.moduleErr(err)
}

// worker returns the running worker, starting one if there is none. A
// module whose worker failed to start is not started again before retryAt
// (no wait after the first failure, then 2 s doubling up to a minute), so
// a module that hangs in C_Initialize does not cost every request a
// timeout.
func (md *module) worker(ctx context.Context) (*proc, *wire.ModuleInfo, error) {
	md.mu.Lock()
	if md.p != nil && md.p.alive() {
		p, info := md.p, md.info
		md.mu.Unlock()
		return p, info, nil
	}
	md.mu.Unlock()

	select {
	case md.gate <- struct{}{}:
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-md.m.closed:
		return nil, nil, ErrClosed
	}
	defer func() { <-md.gate }()

	// The gate keeps starts one at a time; mu is not held while the
	// module initialises (which may hang until CallTimeout).
	md.mu.Lock()
	if md.p != nil && md.p.alive() {
		p, info := md.p, md.info
		md.mu.Unlock()
		return p, info, nil
	}
	md.p = nil
	retryAt, lastErr := md.retryAt, md.lastErr
	md.mu.Unlock()
	if md.m.isClosed() {
		return nil, nil, ErrClosed
	}
	if _, err := os.Stat(md.path); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrModuleNotFound, err)
	}
	if !WorkerSupported {
		return nil, nil, fmt.Errorf("%w: this smimed was built without cgo and cannot load PKCS#11 modules", ErrModuleFailed)
	}
	if time.Now().Before(retryAt) {
		return nil, nil, lastErr
	}
	p, err := startProc(md.name, md.path, md.m.exePath, md.m.argv, md.m.o.WorkerEnv, md.m.log)
	if err == nil {
		var resp wire.Response
		resp, _, err = p.call(ctx, wire.Request{Op: wire.OpInit}, nil, md.m.o.CallTimeout)
		if err == nil && resp.Err != nil {
			err = fmt.Errorf("%w: %v", ErrModuleFailed, resp.Err)
		}
		if err == nil && resp.Info == nil {
			err = fmt.Errorf("%w: the worker sent no module information", ErrModuleFailed)
		}
		if err != nil {
			p.kill(err)
		} else {
			md.mu.Lock()
			md.p, md.info, md.failures, md.lastErr = p, resp.Info, 0, nil
			md.mu.Unlock()
			if md.m.isClosed() { // Close ran while the module started
				md.shutdown()
				return nil, nil, ErrClosed
			}
			md.m.log.Debug("tokens: module started", "module", md.name, "path", md.path,
				"description", resp.Info.Description, "version", resp.Info.LibraryVersion)
			return p, resp.Info, nil
		}
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil, nil, err // the caller gave up; not the module's fault
	}
	md.mu.Lock()
	md.failures++
	delay := time.Duration(0)
	if md.failures > 1 {
		delay = min(time.Minute, time.Second<<min(md.failures-1, 6))
	}
	md.retryAt, md.lastErr = time.Now().Add(delay), err
	md.mu.Unlock()
	md.m.log.Warn("tokens: module failed to start", "module", md.name, "path", md.path, "err", err, "retry_in", delay)
	return nil, nil, err
}

// call sends req to the module's worker, starting it if needed.
func (md *module) call(ctx context.Context, req wire.Request, secret []byte, timeout time.Duration) (wire.Response, []byte, error) {
	p, _, err := md.worker(ctx)
	if err != nil {
		return wire.Response{}, nil, err
	}
	resp, sec, err := p.call(ctx, req, secret, timeout)
	if err != nil && !p.alive() {
		md.mu.Lock()
		if md.p == p {
			md.p, md.lastErr = nil, err
		}
		md.mu.Unlock()
		md.m.log.Warn("tokens: module worker stopped", "module", md.name, "err", err)
	}
	return resp, sec, err
}

// tokens lists the module's initialised tokens.
func (md *module) tokens(ctx context.Context) ([]Token, error) {
	resp, _, err := md.call(ctx, wire.Request{Op: wire.OpSlots, RescanAfterMS: md.m.rescanAfterMS()}, nil, md.m.o.CallTimeout)
	if err != nil {
		return nil, md.moduleErr(err)
	}
	if resp.Err != nil {
		return nil, md.moduleErr(fmt.Errorf("%w: %v", ErrModuleFailed, resp.Err))
	}
	var out []Token
	for _, s := range resp.Slots {
		if s.Token.Flags&wire.CKF_TOKEN_INITIALIZED == 0 {
			continue // SoftHSM's free slot, a blank card
		}
		out = append(out, newToken(md, s))
	}
	return out, nil
}

// shutdown stops the worker.
func (md *module) shutdown() {
	md.mu.Lock()
	p := md.p
	md.p = nil
	md.mu.Unlock()
	if p != nil {
		p.stop(2 * time.Second)
	}
}

// lockToken serialises operations on one token; it waits no longer than
// ctx.
func (m *Manager) lockToken(ctx context.Context, id string) (unlock func(), err error) {
	m.mu.Lock()
	l, ok := m.tokenLocks[id]
	if !ok {
		l = make(chan struct{}, 1)
		m.tokenLocks[id] = l
	}
	m.mu.Unlock()
	select {
	case l <- struct{}{}:
		return func() { <-l }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-m.closed:
		return nil, ErrClosed
	}
}
