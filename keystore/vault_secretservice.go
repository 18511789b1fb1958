package keystore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// Secret Service (org.freedesktop.secrets) names used here. The API is
// https://specifications.freedesktop.org/secret-service/.
const (
	ssBusName      = "org.freedesktop.secrets"
	ssPath         = dbus.ObjectPath("/org/freedesktop/secrets")
	ssService      = "org.freedesktop.Secret.Service"
	ssCollection   = "org.freedesktop.Secret.Collection"
	ssItem         = "org.freedesktop.Secret.Item"
	ssPrompt       = "org.freedesktop.Secret.Prompt"
	ssNoPrompt     = dbus.ObjectPath("/")
	ssErrNoSession = "org.freedesktop.Secret.Error.NoSession"
	ssErrIsLocked  = "org.freedesktop.Secret.Error.IsLocked"
	ssErrNoObject  = "org.freedesktop.Secret.Error.NoSuchObject"
	dbusProps      = "org.freedesktop.DBus.Properties"

	// ssApplication is the "application" attribute of every item we make.
	ssApplication = "smimed"
	// defaultPromptTimeout bounds an unanswered unlock prompt when the
	// caller's context has no earlier deadline.
	defaultPromptTimeout = 2 * time.Minute
	// dismissTimeout bounds the Prompt.Dismiss call made after giving up.
	dismissTimeout = 2 * time.Second
)

// ssSecret is the Secret Service's Secret struct, D-Bus signature (oayays).
type ssSecret struct {
	Session     dbus.ObjectPath
	Parameters  []byte
	Value       []byte
	ContentType string
}

// SecretServiceOptions configure [NewSecretServiceVault].
type SecretServiceOptions struct {
	// Conn is the session-bus connection to use (the daemon's own, so that
	// the process has one D-Bus library and one connection). When nil, a new
	// connection to DBUS_SESSION_BUS_ADDRESS is opened and Close closes it.
	Conn *dbus.Conn
	// Alias names the collection: "default" (the login keyring) when empty.
	Alias string
	// PromptTimeout bounds how long an unlock prompt may stay unanswered
	// when the caller's context has no earlier deadline; 2 minutes when
	// zero.
	PromptTimeout time.Duration
	// Logger receives debug and warning records; none when nil.
	Logger *slog.Logger
}

// SecretServiceVault keeps entries as items of a Secret Service collection
// (gnome-keyring, KWallet, KeePassXC): the encrypted key blob and the
// certificate chain of each identity, each an item labelled
// "smimed key <subject>" or "smimed certificate <subject>" with the
// attributes {"application": "smimed", "smimed-id": ID, "kind": "key" or
// "cert"}. `secret-tool search application smimed` lists them.
//
// A locked collection is unlocked through the service's own prompt. When that
// prompt cannot be shown (no display), is dismissed, or is not answered
// before the context's deadline or PromptTimeout, the operation fails with
// an error wrapping [ErrLocked]; it never hangs.
//
// Transfer uses the "plain" session algorithm: the only secrets that cross
// the bus are the Store's encrypted key blobs (scrypt + AES-256-GCM) and
// public certificates, and the session bus is private to the user, so the
// dh-ietf1024-sha256-aes128-cbc-pkcs7 transport encryption would protect
// nothing more.
type SecretServiceVault struct {
	conn          *dbus.Conn
	ownConn       bool
	alias         string
	promptTimeout time.Duration
	log           *slog.Logger

	mu      sync.Mutex // guards session
	session dbus.ObjectPath

	unlockMu sync.Mutex // one unlock or create prompt at a time
}

// NewSecretServiceVault connects to the Secret Service on the session bus and
// opens a transfer session. It does not unlock anything: a locked collection
// is unlocked (prompting) by the first operation that needs it. When no
// Secret Service is running or activatable, the error wraps
// [ErrUnavailable] and the caller can fall back to [NewFileVault].
func NewSecretServiceVault(ctx context.Context, opts SecretServiceOptions) (*SecretServiceVault, error) {
	v := &SecretServiceVault{
		conn:          opts.Conn,
		alias:         opts.Alias,
		promptTimeout: opts.PromptTimeout,
		log:           opts.Logger,
	}
	if v.alias == "" {
		v.alias = "default"
	}
	if v.promptTimeout <= 0 {
		v.promptTimeout = defaultPromptTimeout
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if v.conn == nil {
		conn, err := dbus.ConnectSessionBus()
		if err != nil {
			return nil, fmt.Errorf("%w: secret service: session bus: %w", ErrUnavailable, err)
		}
		v.conn, v.ownConn = conn, true
	}
	if _, err := v.sessionPath(ctx); err != nil {
		_ = v.Close()
		return nil, err
	}
	return v, nil
}

// Backend returns "secret-service".
func (v *SecretServiceVault) Backend() string { return "secret-service" }

// Close ends the transfer session and closes the D-Bus connection if the
// vault opened it.
func (v *SecretServiceVault) Close() error {
	v.mu.Lock()
	sess := v.session
	v.session = ""
	v.mu.Unlock()
	if sess != "" {
		ctx, cancel := context.WithTimeout(context.Background(), dismissTimeout)
		_ = v.conn.Object(ssBusName, sess).CallWithContext(ctx, "org.freedesktop.Secret.Session.Close", 0).Err
		cancel()
	}
	if v.ownConn {
		return v.conn.Close()
	}
	return nil
}

// call invokes a method on a Secret Service object.
func (v *SecretServiceVault) call(ctx context.Context, path dbus.ObjectPath, method string, args ...any) *dbus.Call {
	return v.conn.Object(ssBusName, path).CallWithContext(ctx, method, 0, args...)
}

// property reads one property of a Secret Service object.
func (v *SecretServiceVault) property(ctx context.Context, path dbus.ObjectPath, iface, name string) (dbus.Variant, error) {
	var val dbus.Variant
	err := v.call(ctx, path, dbusProps+".Get", iface, name).Store(&val)
	return val, err
}

// wrapErr maps D-Bus errors to this package's sentinels.
func (v *SecretServiceVault) wrapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	name := dbusErrName(err)
	switch name {
	case ssErrIsLocked:
		return fmt.Errorf("%w: secret service: %s: %w", ErrLocked, what, err)
	case "org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.Spawn.ServiceNotFound", "org.freedesktop.DBus.Error.Spawn.ChildExited":
		return fmt.Errorf("%w: secret service: %s: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("keystore: secret service: %s: %w", what, err)
}

func dbusErrName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	var dep *dbus.Error
	if errors.As(err, &dep) {
		return dep.Name
	}
	return ""
}

// sessionPath returns the open transfer session, opening one if needed.
func (v *SecretServiceVault) sessionPath(ctx context.Context) (dbus.ObjectPath, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.session != "" {
		return v.session, nil
	}
	var out dbus.Variant
	var path dbus.ObjectPath
	err := v.call(ctx, ssPath, ssService+".OpenSession", "plain", dbus.MakeVariant("")).Store(&out, &path)
	if err != nil {
		return "", v.wrapErr("open session", err)
	}
	v.session = path
	return path, nil
}

// withSession runs f with the transfer session, reopening the session once
// if the service forgot it (it was restarted).
func (v *SecretServiceVault) withSession(ctx context.Context, f func(dbus.ObjectPath) error) error {
	for attempt := 0; ; attempt++ {
		sess, err := v.sessionPath(ctx)
		if err != nil {
			return err
		}
		err = f(sess)
		name := dbusErrName(err)
		if attempt == 0 && (name == ssErrNoSession || name == "org.freedesktop.DBus.Error.UnknownObject" ||
			name == "org.freedesktop.DBus.Error.UnknownMethod") {
			v.mu.Lock()
			if v.session == sess {
				v.session = ""
			}
			v.mu.Unlock()
			continue
		}
		return err
	}
}

// collection returns the unlocked collection named by the alias, creating it
// (the service prompts for its password) when the alias is unset, and
// unlocking it (the service prompts) when it is locked.
func (v *SecretServiceVault) collection(ctx context.Context) (dbus.ObjectPath, error) {
	var coll dbus.ObjectPath
	if err := v.call(ctx, ssPath, ssService+".ReadAlias", v.alias).Store(&coll); err != nil {
		return "", v.wrapErr("read alias "+v.alias, err)
	}
	if coll == ssNoPrompt {
		created, err := v.createCollection(ctx)
		if err != nil {
			return "", err
		}
		coll = created
	}
	locked, err := v.locked(ctx, coll)
	if err != nil {
		return "", err
	}
	if locked {
		if err := v.unlock(ctx, coll); err != nil {
			return "", err
		}
	}
	return coll, nil
}

func (v *SecretServiceVault) locked(ctx context.Context, coll dbus.ObjectPath) (bool, error) {
	val, err := v.property(ctx, coll, ssCollection, "Locked")
	if err != nil {
		return false, v.wrapErr("collection "+string(coll), err)
	}
	locked, ok := val.Value().(bool)
	if !ok {
		return false, fmt.Errorf("keystore: secret service: collection %s: Locked is %s, not a boolean", coll, val.Signature())
	}
	return locked, nil
}

// unlock asks the service to unlock coll and waits for its prompt.
func (v *SecretServiceVault) unlock(ctx context.Context, coll dbus.ObjectPath) error {
	v.unlockMu.Lock()
	defer v.unlockMu.Unlock()
	// Another request may have unlocked it while we waited for our turn.
	if locked, err := v.locked(ctx, coll); err != nil || !locked {
		return err
	}
	v.log.InfoContext(ctx, "keystore: secret service collection is locked; asking to unlock", "collection", string(coll))
	var unlocked []dbus.ObjectPath
	var prompt dbus.ObjectPath
	if err := v.call(ctx, ssPath, ssService+".Unlock", []dbus.ObjectPath{coll}).Store(&unlocked, &prompt); err != nil {
		return fmt.Errorf("%w: secret service: unlock %s: %w", ErrLocked, coll, err)
	}
	if prompt != ssNoPrompt {
		if _, err := v.runPrompt(ctx, prompt); err != nil {
			return fmt.Errorf("%w: secret service: unlock %s: %w", ErrLocked, coll, err)
		}
	}
	locked, err := v.locked(ctx, coll)
	if err != nil {
		return err
	}
	if locked {
		return fmt.Errorf("%w: secret service: collection %s is still locked", ErrLocked, coll)
	}
	return nil
}

// createCollection creates the collection for the alias; the service prompts
// for the new keyring's password.
func (v *SecretServiceVault) createCollection(ctx context.Context) (dbus.ObjectPath, error) {
	v.unlockMu.Lock()
	defer v.unlockMu.Unlock()
	var coll dbus.ObjectPath
	if err := v.call(ctx, ssPath, ssService+".ReadAlias", v.alias).Store(&coll); err != nil {
		return "", v.wrapErr("read alias "+v.alias, err)
	}
	if coll != ssNoPrompt {
		return coll, nil
	}
	v.log.InfoContext(ctx, "keystore: no secret service collection for alias; asking to create one", "alias", v.alias)
	props := map[string]dbus.Variant{ssCollection + ".Label": dbus.MakeVariant("Default keyring")}
	var prompt dbus.ObjectPath
	if err := v.call(ctx, ssPath, ssService+".CreateCollection", props, v.alias).Store(&coll, &prompt); err != nil {
		return "", fmt.Errorf("%w: secret service: no %q collection and none can be created: %w", ErrLocked, v.alias, err)
	}
	if coll == ssNoPrompt {
		res, err := v.runPrompt(ctx, prompt)
		if err != nil {
			return "", fmt.Errorf("%w: secret service: no %q collection and none was created: %w", ErrLocked, v.alias, err)
		}
		p, ok := res.Value().(dbus.ObjectPath)
		if !ok || p == ssNoPrompt {
			return "", fmt.Errorf("%w: secret service: no %q collection was created", ErrLocked, v.alias)
		}
		coll = p
	}
	return coll, nil
}

// runPrompt shows a Secret Service prompt and waits for its Completed signal,
// the end of ctx, or the vault's prompt timeout. A dismissed prompt, a prompt
// the service cannot show, and a timeout are errors; on timeout the prompt
// is dismissed.
func (v *SecretServiceVault) runPrompt(ctx context.Context, prompt dbus.ObjectPath) (dbus.Variant, error) {
	ctx, cancel := context.WithTimeout(ctx, v.promptTimeout)
	defer cancel()

	signals := make(chan *dbus.Signal, 8)
	v.conn.Signal(signals)
	defer v.conn.RemoveSignal(signals)
	match := []dbus.MatchOption{
		dbus.WithMatchObjectPath(prompt),
		dbus.WithMatchInterface(ssPrompt),
		dbus.WithMatchMember("Completed"),
	}
	if err := v.conn.AddMatchSignalContext(ctx, match...); err != nil {
		return dbus.Variant{}, fmt.Errorf("watch prompt: %w", err)
	}
	defer func() {
		rctx, rcancel := context.WithTimeout(context.Background(), dismissTimeout)
		_ = v.conn.RemoveMatchSignalContext(rctx, match...)
		rcancel()
	}()

	if err := v.call(ctx, prompt, ssPrompt+".Prompt", "").Err; err != nil {
		return dbus.Variant{}, fmt.Errorf("prompt cannot be shown: %w", err)
	}
	for {
		select {
		case sig, ok := <-signals:
			if !ok {
				return dbus.Variant{}, errors.New("D-Bus connection closed while waiting for the prompt")
			}
			if sig == nil || sig.Path != prompt || sig.Name != ssPrompt+".Completed" {
				continue
			}
			var dismissed bool
			var result dbus.Variant
			if err := dbus.Store(sig.Body, &dismissed, &result); err != nil {
				return dbus.Variant{}, fmt.Errorf("prompt result: %w", err)
			}
			if dismissed {
				return dbus.Variant{}, errors.New("prompt dismissed (or it could not be shown)")
			}
			return result, nil
		case <-ctx.Done():
			dctx, dcancel := context.WithTimeout(context.Background(), dismissTimeout)
			_ = v.call(dctx, prompt, ssPrompt+".Dismiss").Err
			dcancel()
			return dbus.Variant{}, fmt.Errorf("prompt not answered: %w", ctx.Err())
		}
	}
}

func ssAttributes(id string, kind itemKind) map[string]string {
	return map[string]string{"application": ssApplication, "smimed-id": id, "kind": string(kind)}
}

func (v *SecretServiceVault) search(ctx context.Context, coll dbus.ObjectPath, attrs map[string]string) ([]dbus.ObjectPath, error) {
	var items []dbus.ObjectPath
	if err := v.call(ctx, coll, ssCollection+".SearchItems", attrs).Store(&items); err != nil {
		return nil, v.wrapErr("search", err)
	}
	return items, nil
}

func (v *SecretServiceVault) put(ctx context.Context, it item) error {
	if err := checkName(it.id, it.kind); err != nil {
		return err
	}
	coll, err := v.collection(ctx)
	if err != nil {
		return err
	}
	attrs := ssAttributes(it.id, it.kind)
	old, err := v.search(ctx, coll, attrs)
	if err != nil {
		return err
	}
	props := map[string]dbus.Variant{
		ssItem + ".Label":      dbus.MakeVariant(it.label),
		ssItem + ".Attributes": dbus.MakeVariant(attrs),
	}
	var created dbus.ObjectPath
	err = v.withSession(ctx, func(sess dbus.ObjectPath) error {
		secret := ssSecret{Session: sess, Parameters: []byte{}, Value: it.data, ContentType: "application/octet-stream"}
		var prompt dbus.ObjectPath
		if err := v.call(ctx, coll, ssCollection+".CreateItem", props, secret, true).Store(&created, &prompt); err != nil {
			return err
		}
		if created == ssNoPrompt && prompt != ssNoPrompt {
			res, err := v.runPrompt(ctx, prompt)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrLocked, err)
			}
			p, ok := res.Value().(dbus.ObjectPath)
			if !ok {
				return errors.New("prompt returned no item")
			}
			created = p
		}
		return nil
	})
	if err != nil {
		return v.wrapErr("create item", err)
	}
	// CreateItem with replace=true replaces an item with exactly the same
	// attributes; remove any other copy so that get finds one item.
	for _, p := range old {
		if p != created {
			if err := v.deleteItem(ctx, p); err != nil {
				v.log.WarnContext(ctx, "keystore: cannot remove a replaced secret service item", "item", string(p), "err", err)
			}
		}
	}
	return nil
}

func (v *SecretServiceVault) get(ctx context.Context, id string, kind itemKind) (item, error) {
	if err := checkName(id, kind); err != nil {
		return item{}, err
	}
	coll, err := v.collection(ctx)
	if err != nil {
		return item{}, err
	}
	paths, err := v.search(ctx, coll, ssAttributes(id, kind))
	if err != nil {
		return item{}, err
	}
	if len(paths) == 0 {
		return item{}, fmt.Errorf("%w: %s entry %s", ErrNotFound, kind, id)
	}
	var secret ssSecret
	err = v.withSession(ctx, func(sess dbus.ObjectPath) error {
		return v.call(ctx, paths[0], ssItem+".GetSecret", sess).Store(&secret)
	})
	if err != nil {
		return item{}, v.wrapErr("get secret of "+string(paths[0]), err)
	}
	if len(secret.Value) == 0 {
		return item{}, corrupt(string(paths[0]), "item holds no secret")
	}
	return item{id: id, kind: kind, data: secret.Value, where: string(paths[0])}, nil
}

func (v *SecretServiceVault) list(ctx context.Context) ([]item, error) {
	coll, err := v.collection(ctx)
	if err != nil {
		return nil, err
	}
	paths, err := v.search(ctx, coll, map[string]string{"application": ssApplication})
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, nil
	}
	var secrets map[dbus.ObjectPath]ssSecret
	err = v.withSession(ctx, func(sess dbus.ObjectPath) error {
		return v.call(ctx, ssPath, ssService+".GetSecrets", paths, sess).Store(&secrets)
	})
	if err != nil {
		return nil, v.wrapErr("get secrets", err)
	}
	var items []item
	var errs []error
	seen := make(map[string]bool)
	for _, p := range paths {
		val, err := v.property(ctx, p, ssItem, "Attributes")
		if err != nil {
			if dbusErrName(err) == ssErrNoObject || dbusErrName(err) == "org.freedesktop.DBus.Error.UnknownObject" {
				continue // deleted while we listed
			}
			return nil, v.wrapErr("attributes of "+string(p), err)
		}
		attrs, ok := val.Value().(map[string]string)
		if !ok {
			errs = append(errs, corrupt(string(p), "attributes are %s, not a string map", val.Signature()))
			continue
		}
		id, kind := attrs["smimed-id"], itemKind(attrs["kind"])
		if err := checkName(id, kind); err != nil {
			errs = append(errs, &CorruptError{Where: string(p), Err: err})
			continue
		}
		secret, ok := secrets[p]
		if !ok || len(secret.Value) == 0 {
			errs = append(errs, corrupt(string(p), "item holds no secret"))
			continue
		}
		name := id + "." + string(kind)
		if seen[name] {
			continue // duplicate left by a crash between create and delete
		}
		seen[name] = true
		items = append(items, item{id: id, kind: kind, data: secret.Value, where: string(p)})
	}
	return items, errors.Join(errs...)
}

func (v *SecretServiceVault) remove(ctx context.Context, id string, kind itemKind) error {
	if err := checkName(id, kind); err != nil {
		return err
	}
	coll, err := v.collection(ctx)
	if err != nil {
		return err
	}
	paths, err := v.search(ctx, coll, ssAttributes(id, kind))
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("%w: %s entry %s", ErrNotFound, kind, id)
	}
	for _, p := range paths {
		if err := v.deleteItem(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

func (v *SecretServiceVault) deleteItem(ctx context.Context, p dbus.ObjectPath) error {
	var prompt dbus.ObjectPath
	if err := v.call(ctx, p, ssItem+".Delete").Store(&prompt); err != nil {
		return v.wrapErr("delete "+string(p), err)
	}
	if prompt != ssNoPrompt {
		if _, err := v.runPrompt(ctx, prompt); err != nil {
			return fmt.Errorf("%w: secret service: delete %s: %w", ErrLocked, p, err)
		}
	}
	return nil
}
