//go:build unix

package dbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/ipc"
)

// ServerOptions configures a Server. The zero value is ready to use.
type ServerOptions struct {
	// Logger receives the server's log; nil means slog.Default().
	Logger *slog.Logger
	// MaxMessageBytes limits the payload of one request: what a method reads
	// from its "in" descriptor, or a byte-array argument. A larger payload is
	// refused with TooLarge. Zero means DefaultMaxMessageBytes.
	MaxMessageBytes int64
	// UID is the only user allowed to call. Zero means os.Getuid(), so a
	// daemon serves its own user.
	UID uint32
	// ShutdownTimeout bounds how long Run waits for requests still running
	// once its context is done. When it expires, their contexts are cancelled
	// and Run waits for them to return. Zero means wait as long as they take.
	ShutdownTimeout time.Duration
	// AllowPromptAgents lets clients register prompt agents
	// (RegisterPromptAgent), so that the prompts of their own requests are
	// shown by them instead of pinentry. False, the zero value, refuses
	// every registration with NotAuthorized; the daemon sets it from its
	// configuration (prompt.allow_agents).
	AllowPromptAgents bool
}

// Server serves an ipc.Service on a D-Bus connection.
//
// Each method call runs in its own goroutine (godbus dispatches every
// incoming call on a new goroutine), so a slow request never holds up another
// one. Before the service is called, the server asks the bus for the
// caller's uid and pid (cached per unique name while the name lives). A
// caller of another uid gets NotAuthorized. Every request's context carries
// the ipc.Caller and is cancelled when the caller leaves the bus. When the
// caller has registered a prompt agent (and AllowPromptAgents), the context
// also carries it (ipc.PromptAgentFrom). A panic in the service is
// recovered, logged with its stack, and answered with Internal.
type Server struct {
	conn            *godbus.Conn
	svc             ipc.Service
	log             *slog.Logger
	maxBytes        int64
	uid             uint32
	shutdownTimeout time.Duration
	allowAgents     bool
	xml             string
	signatures      map[string]string // method name → its in signature

	mu         sync.Mutex
	state      serverState
	base       context.Context // parent of every request's context
	cancelBase context.CancelFunc
	callers    map[string]*callerEntry // by unique bus name
	inflight   sync.WaitGroup
	active     atomic.Int64 // requests admitted and not yet done, for drain

	promptIDs atomic.Uint32 // numbers the prompts sent to agents
}

type serverState int

const (
	stateNew serverState = iota
	stateRunning
	stateDraining
	stateStopped
)

// callerEntry is what the server knows about one unique bus name.
type callerEntry struct {
	ctx    context.Context // cancelled when the name leaves the bus
	cancel context.CancelFunc
	once   sync.Once
	caller ipc.Caller
	err    error
	// agent is the path of the caller's registered prompt agent on its
	// own connection; "" when none. Guarded by Server.mu. It goes with the
	// entry when the caller leaves the bus.
	agent godbus.ObjectPath
}

// NewServer returns a server for svc on conn. conn must be connected to the
// bus and authenticated (godbus.ConnectSessionBus does both). The server
// exports nothing and owns no name until Run.
func NewServer(conn *godbus.Conn, svc ipc.Service, opts ServerOptions) (*Server, error) {
	if conn == nil || svc == nil {
		return nil, errors.New("ipc/dbus: NewServer needs a connection and a service")
	}
	xml, err := introspectionXML()
	if err != nil {
		return nil, err
	}
	s := &Server{
		conn:            conn,
		svc:             svc,
		log:             opts.Logger,
		maxBytes:        opts.MaxMessageBytes,
		uid:             opts.UID,
		shutdownTimeout: opts.ShutdownTimeout,
		allowAgents:     opts.AllowPromptAgents,
		xml:             xml,
		signatures:      make(map[string]string),
		callers:         make(map[string]*callerEntry),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxMessageBytes
	}
	if s.uid == 0 {
		s.uid = uint32(os.Getuid())
	}
	for _, m := range methodDocs() {
		in, _, _ := methodSignatures(m.name)
		s.signatures[m.name] = strings.Join(in, "")
	}
	if !conn.SupportsUnixFDs() {
		s.log.Warn("the bus connection cannot pass file descriptors; only the *Bytes methods will work")
	}
	return s, nil
}

// Run exports the object, requests BusName and serves until ctx is done or
// the bus connection closes. It fails at once, wrapping ErrNameTaken, when
// another connection owns the name (another smimed of the same user).
//
// When ctx is done, Run releases the name, so new callers reach a new
// instance, or wait for one when the bus activates it. It then answers
// new calls on its unique name with org.freedesktop.DBus.Error.NoServer and
// waits for the requests still running (see ServerOptions.ShutdownTimeout)
// before it unexports the object and returns nil. Run may be called once.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.state != stateNew {
		s.mu.Unlock()
		return errors.New("ipc/dbus: Run may be called only once")
	}
	s.state = stateRunning
	s.base, s.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Unlock()
	defer s.cancelBase()

	// Watch callers leave the bus before anyone can call.
	signals := make(chan *godbus.Signal, 64)
	s.conn.Signal(signals)
	defer s.conn.RemoveSignal(signals)
	watch := []godbus.MatchOption{
		godbus.WithMatchSender("org.freedesktop.DBus"),
		godbus.WithMatchInterface("org.freedesktop.DBus"),
		godbus.WithMatchMember("NameOwnerChanged"),
		godbus.WithMatchArg(2, ""), // only names that lost their owner
	}
	if err := s.conn.AddMatchSignalContext(ctx, watch...); err != nil {
		s.stop()
		return fmt.Errorf("ipc/dbus: watching callers leave the bus: %w", err)
	}
	stopWatching := make(chan struct{})
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		s.watchCallers(signals, stopWatching)
	}()
	defer func() {
		close(stopWatching)
		<-watching
		if s.conn.Connected() {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			_ = s.conn.RemoveMatchSignalContext(rctx, watch...)
		}
	}()

	if err := s.conn.Export(object{s}, ObjectPath, Interface); err != nil {
		s.stop()
		return fmt.Errorf("ipc/dbus: exporting %s: %w", ObjectPath, err)
	}
	if err := s.conn.Export(introspectable(s.xml), ObjectPath, "org.freedesktop.DBus.Introspectable"); err != nil {
		s.unexport()
		s.stop()
		return fmt.Errorf("ipc/dbus: exporting %s: %w", ObjectPath, err)
	}

	if err := s.requestName(ctx); err != nil {
		s.unexport()
		s.stop()
		return err
	}
	s.log.Info("serving on the session bus", "name", BusName, "unique_name", s.uniqueName(), "uid", s.uid)

	var runErr error
	select {
	case <-ctx.Done():
	case <-s.conn.Context().Done():
		runErr = errors.New("ipc/dbus: the bus connection closed")
		s.cancelBase() // no reply can be delivered any more
	}

	if s.conn.Connected() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		var reply uint32
		err := s.conn.BusObject().CallWithContext(rctx, "org.freedesktop.DBus.ReleaseName", 0, BusName).Store(&reply)
		cancel()
		if err != nil {
			s.log.Warn("releasing the bus name", "name", BusName, "err", err)
		}
	}
	s.drain()
	s.unexport()
	s.log.Info("stopped serving", "name", BusName)
	return runErr
}

// requestName owns BusName or says who does.
func (s *Server) requestName(ctx context.Context) error {
	var reply uint32
	err := s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.RequestName", 0,
		BusName, uint32(godbus.NameFlagDoNotQueue)).Store(&reply)
	if err != nil {
		return fmt.Errorf("ipc/dbus: requesting the name %s: %w", BusName, err)
	}
	switch godbus.RequestNameReply(reply) {
	case godbus.RequestNameReplyPrimaryOwner, godbus.RequestNameReplyAlreadyOwner:
		return nil
	case godbus.RequestNameReplyExists:
		var owner string
		_ = s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetNameOwner", 0, BusName).Store(&owner)
		pid := ""
		var p uint32
		if owner != "" && s.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, owner).Store(&p) == nil {
			pid = fmt.Sprintf(", pid %d", p)
		}
		return fmt.Errorf("%w (owner %s%s): another smimed is already running for this user", ErrNameTaken, owner, pid)
	}
	return fmt.Errorf("ipc/dbus: requesting the name %s: unexpected reply %d", BusName, reply)
}

// replyGrace is how long drain waits, after the last in-flight request's
// method returned, before the connection may be closed: godbus sends the
// reply on the request's goroutine only after the method returns, and no
// hook says when it has gone out, so closing at once could drop it.
const replyGrace = 250 * time.Millisecond

// drain stops accepting requests and waits for those that run (and, if
// any ran, for their replies to be sent; see replyGrace).
func (s *Server) drain() {
	s.mu.Lock()
	s.state = stateDraining
	s.mu.Unlock()
	if s.active.Load() > 0 {
		defer time.Sleep(replyGrace)
	}
	done := make(chan struct{})
	go func() {
		s.inflight.Wait()
		close(done)
	}()
	var expired <-chan time.Time
	if s.shutdownTimeout > 0 {
		t := time.NewTimer(s.shutdownTimeout)
		defer t.Stop()
		expired = t.C
	}
	select {
	case <-done:
	case <-expired:
		s.log.Warn("cancelling requests still running at shutdown", "after", s.shutdownTimeout)
		s.cancelBase()
		<-done
	}
	s.stop()
}

func (s *Server) stop() {
	s.mu.Lock()
	s.state = stateStopped
	for name, e := range s.callers {
		e.cancel()
		delete(s.callers, name)
	}
	s.mu.Unlock()
}

func (s *Server) unexport() {
	_ = s.conn.Export(nil, ObjectPath, Interface)
	_ = s.conn.Export(nil, ObjectPath, "org.freedesktop.DBus.Introspectable")
}

func (s *Server) uniqueName() string {
	if names := s.conn.Names(); len(names) > 0 {
		return names[0]
	}
	return ""
}

// EmitIdentitiesChanged tells clients that the user's identities or tokens
// changed.
func (s *Server) EmitIdentitiesChanged() error {
	return s.conn.Emit(ObjectPath, Interface+".IdentitiesChanged")
}

// EmitCertificatesChanged tells clients that trust anchors or the address
// book changed.
func (s *Server) EmitCertificatesChanged() error {
	return s.conn.Emit(ObjectPath, Interface+".CertificatesChanged")
}

// watchCallers cancels the requests of callers that leave the bus and
// forgets them.
func (s *Server) watchCallers(signals <-chan *godbus.Signal, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case sig, ok := <-signals:
			if !ok {
				return
			}
			if sig.Name != "org.freedesktop.DBus.NameOwnerChanged" || sig.Sender != "org.freedesktop.DBus" || len(sig.Body) != 3 {
				continue
			}
			name, _ := sig.Body[0].(string)
			newOwner, _ := sig.Body[2].(string)
			if newOwner != "" || !strings.HasPrefix(name, ":") {
				continue
			}
			s.mu.Lock()
			e := s.callers[name]
			delete(s.callers, name)
			s.mu.Unlock()
			if e != nil {
				e.cancel()
				s.log.Debug("caller left the bus", "caller", name)
			}
		}
	}
}

// call runs one method call for the sender of msg: it admits the request,
// checks the caller's uid and the argument signature, and runs fn with a
// context that carries the caller (and its prompt agent, when it has one).
// fn owns the descriptors in msg; when fn is not run, call closes them.
func (s *Server) call(msg *godbus.Message, method string, fn func(ctx context.Context) error) *godbus.Error {
	return s.callEntry(msg, method, func(ctx context.Context, _ *callerEntry) error { return fn(ctx) })
}

// callEntry is call for methods that change what the server knows about
// the caller: fn also gets the caller's entry.
func (s *Server) callEntry(msg *godbus.Message, method string, fn func(ctx context.Context, e *callerEntry) error) (derr *godbus.Error) {
	sender, _ := msg.Headers[godbus.FieldSender].Value().(string)
	entry, done, derr := s.admit(sender)
	if derr != nil {
		closeFDs(msg.Body)
		return derr
	}
	defer done()

	caller, err := s.identify(entry, sender)
	if err != nil {
		closeFDs(msg.Body)
		s.log.Warn("refused a caller the bus could not identify", "method", method, "caller", sender, "err", err)
		return s.errorReply(method, ipc.Errorf(ipc.NotAuthorized, "the bus could not tell who is calling"))
	}
	if caller.UID != s.uid {
		closeFDs(msg.Body)
		s.log.Warn("refused a caller of another user", "method", method, "caller", sender,
			"uid", caller.UID, "pid", caller.PID, "exe", caller.Exe)
		return s.errorReply(method, ipc.Errorf(ipc.NotAuthorized, "smimed serves only its own user (uid %d)", s.uid))
	}
	if want, got := s.signatures[method], signatureOf(msg); got != want {
		closeFDs(msg.Body)
		return invalidArgs("%s takes arguments of type (%s), not (%s)", method, want, got)
	}

	ctx, cancel := context.WithCancel(entry.ctx)
	defer cancel()
	ctx = ipc.WithCaller(ctx, caller)
	ctx = ipc.WithPromptAgent(ctx, s.promptAgent(entry, sender))

	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in a request; smimed keeps serving", "method", method, "caller", sender,
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			derr = s.errorReply(method, ipc.Errorf(ipc.Internal, "internal error in %s; see the smimed log", method))
		}
	}()
	if err := fn(ctx, entry); err != nil {
		return s.errorReply(method, err)
	}
	return nil
}

// admit counts a request in, unless the server is shutting down, and
// returns the sender's entry.
func (s *Server) admit(sender string) (*callerEntry, func(), *godbus.Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != stateRunning || sender == "" {
		return nil, nil, &godbus.Error{Name: errNoServer, Body: []any{"smimed is shutting down"}}
	}
	s.inflight.Add(1)
	s.active.Add(1)
	e := s.callers[sender]
	if e == nil {
		e = &callerEntry{}
		e.ctx, e.cancel = context.WithCancel(s.base)
		s.callers[sender] = e
	}
	return e, func() { s.active.Add(-1); s.inflight.Done() }, nil
}

// identify asks the bus who sender is, once per unique name. The entry
// exists before the bus is asked, so a caller leaving at any time either
// cancels the entry or makes the question fail.
func (s *Server) identify(e *callerEntry, sender string) (ipc.Caller, error) {
	e.once.Do(func() {
		e.caller, e.err = s.lookupCaller(e.ctx, sender)
		if e.err != nil {
			s.mu.Lock()
			if s.callers[sender] == e {
				delete(s.callers, sender)
			}
			s.mu.Unlock()
			e.cancel()
		}
	})
	return e.caller, e.err
}

func (s *Server) lookupCaller(ctx context.Context, name string) (ipc.Caller, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	bus := s.conn.BusObject()
	c := ipc.Caller{Name: name}
	var creds map[string]godbus.Variant
	err := bus.CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionCredentials", 0, name).Store(&creds)
	var dbusErr godbus.Error
	switch {
	case err == nil:
		uid, ok := creds["UnixUserID"].Value().(uint32)
		if !ok {
			return c, errors.New("the bus did not report the caller's uid")
		}
		c.UID = uid
		c.PID, _ = creds["ProcessID"].Value().(uint32)
	case errors.As(err, &dbusErr) && dbusErr.Name == errUnknownMethod:
		// A bus older than GetConnectionCredentials.
		if err := bus.CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser", 0, name).Store(&c.UID); err != nil {
			return c, err
		}
		_ = bus.CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixProcessID", 0, name).Store(&c.PID)
	default:
		return c, err
	}
	if c.PID != 0 {
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", c.PID)); err == nil {
			c.Exe = exe
		}
	}
	return c, nil
}

// argError is a malformed argument, answered with InvalidArgs.
type argError struct{ msg string }

func (e *argError) Error() string { return e.msg }

func badArg(format string, args ...any) error {
	return &argError{msg: fmt.Sprintf(format, args...)}
}

func invalidArgs(format string, args ...any) *godbus.Error {
	return &godbus.Error{Name: errInvalidArgs, Body: []any{validString(fmt.Sprintf(format, args...))}}
}

// errorReply turns err into the D-Bus error the caller sees: the error's
// contract name and its message for people, never its cause.
func (s *Server) errorReply(method string, err error) *godbus.Error {
	var ae *argError
	if errors.As(err, &ae) {
		return invalidArgs("%s: %s", method, ae.msg)
	}
	name := ipc.NameOf(err)
	if !slices.Contains(ipc.AllErrorNames(), name) {
		name = ipc.Internal
	}
	var ie *ipc.Error
	var msg string
	switch {
	case errors.As(err, &ie) && ie.Name == name:
		msg = ie.Message
	case name == ipc.Cancelled:
		msg = "the request was cancelled"
	default:
		msg = "internal error; see the smimed log"
	}
	if name == ipc.Internal {
		s.log.Error("request failed", "method", method, "err", err)
	} else {
		s.log.Debug("request refused", "method", method, "err", err)
	}
	return &godbus.Error{Name: DBusErrorName(name), Body: []any{validString(msg)}}
}

// validString makes s acceptable as a D-Bus string: valid UTF-8, no NUL.
func validString(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

func signatureOf(msg *godbus.Message) string {
	if v, ok := msg.Headers[godbus.FieldSignature]; ok {
		if sig, ok := v.Value().(godbus.Signature); ok {
			return sig.String()
		}
	}
	return ""
}

// introspectable answers org.freedesktop.DBus.Introspectable.Introspect.
type introspectable string

// Introspect returns the introspection XML.
func (x introspectable) Introspect() (string, *godbus.Error) { return string(x), nil }
