//go:build cgo && unix

// Package worker is the PKCS#11 side of smimed's token support: a process
// that loads one module, answers requests from the daemon (package
// tokens/internal/wire) and does every PKCS#11 call. A module that hangs or
// crashes takes only its worker down.
package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/pkcs11"

	"github.com/smimed/smimed/tokens/internal/wire"
)

// Supported reports whether this build can run a worker (cgo on Unix).
const Supported = true

// Serve loads the module at path when the daemon's init request arrives,
// then answers requests from in on out until in closes. It returns the
// error that ended it (nil for a clean close).
func Serve(path string, in io.Reader, out io.Writer) error {
	w := &worker{path: path, out: out, tokenLocks: map[string]*sync.Mutex{}}
	defer w.close()
	var handlers sync.WaitGroup
	defer handlers.Wait()
	for {
		f, err := wire.ReadFrame(in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var req wire.Request
		if err := json.Unmarshal(f.Control, &req); err != nil {
			f.Wipe()
			return fmt.Errorf("worker: bad request: %w", err)
		}
		clear(f.Control)
		if req.Op == wire.OpInit {
			// Synchronous: nothing else can run before the module is up.
			f.Wipe()
			w.reply(w.init(req))
			continue
		}
		handlers.Add(1)
		go func() {
			defer handlers.Done()
			defer f.Wipe()
			w.reply(w.handle(req, f.Secret))
		}()
	}
}

type worker struct {
	path string
	out  io.Writer
	wmu  sync.Mutex // serialises writes to out

	// mu: operations hold it for reading; re-initialising the module
	// (C_Finalize + C_Initialize) holds it for writing.
	mu     sync.RWMutex
	ctx    *pkcs11.Ctx
	lib    *library
	initAt time.Time

	tlMu       sync.Mutex
	tokenLocks map[string]*sync.Mutex
}

func (w *worker) reply(r response) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	var secret []byte
	if r.Err == nil && r.secret != nil {
		secret = r.secret
	}
	_ = wire.WriteFrame(w.out, r.Response, secret)
	clear(r.secret)
}

// response is a wire.Response plus its secret part.
type response struct {
	wire.Response
	secret []byte
}

func (w *worker) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx != nil {
		_ = w.ctx.Finalize()
	}
}

func fail(id uint64, e *wire.Error) response {
	return response{Response: wire.Response{ID: id, Err: e}}
}

func (w *worker) init(req wire.Request) response {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ctx == nil {
		if _, err := os.Stat(w.path); err != nil {
			return fail(req.ID, &wire.Error{Kind: wire.KindLoad, Message: err.Error()})
		}
		lib, err := openLibrary(w.path)
		if err != nil {
			return fail(req.ID, &wire.Error{Kind: wire.KindLoad, Message: "cannot load " + w.path + ": " + err.Error()})
		}
		ctx := pkcs11.New(w.path)
		if ctx == nil {
			return fail(req.ID, &wire.Error{Kind: wire.KindLoad, Message: w.path + " is not a PKCS#11 module (no C_GetFunctionList)"})
		}
		if err := lib.bind(); err != nil {
			return fail(req.ID, &wire.Error{Kind: wire.KindLoad, Message: err.Error()})
		}
		if err := ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			return fail(req.ID, classify("C_Initialize", err))
		}
		w.ctx, w.lib, w.initAt = ctx, lib, time.Now()
	}
	info, err := w.ctx.GetInfo()
	if err != nil {
		return fail(req.ID, classify("C_GetInfo", err))
	}
	return response{Response: wire.Response{ID: req.ID, Info: &wire.ModuleInfo{
		Description:     clean(info.LibraryDescription),
		Manufacturer:    clean(info.ManufacturerID),
		LibraryVersion:  fmt.Sprintf("%d.%d", info.LibraryVersion.Major, info.LibraryVersion.Minor),
		CryptokiVersion: fmt.Sprintf("%d.%d", info.CryptokiVersion.Major, info.CryptokiVersion.Minor),
	}}}
}

func (w *worker) handle(req wire.Request, secret []byte) response {
	w.mu.RLock()
	ready := w.ctx != nil
	w.mu.RUnlock()
	if !ready {
		return fail(req.ID, &wire.Error{Kind: wire.KindProtocol, Message: "request before init"})
	}
	switch req.Op {
	case wire.OpSlots:
		return w.slots(req)
	case wire.OpObjects:
		return w.objects(req)
	case wire.OpPrepare:
		return w.prepare(req)
	case wire.OpSign, wire.OpDecrypt, wire.OpDerive:
		return w.operate(req, secret)
	}
	return fail(req.ID, &wire.Error{Kind: wire.KindProtocol, Message: "unknown operation " + req.Op})
}

// rescan re-initialises the module so that it sees tokens created since
// (SoftHSM reads its token directory only in C_Initialize). With force it
// waits for running operations; without, it skips when any is running or
// the last initialisation is younger than after.
func (w *worker) rescan(force bool, after time.Duration) error {
	if force {
		w.mu.Lock()
	} else if !w.mu.TryLock() {
		return nil
	}
	defer w.mu.Unlock()
	if !force && time.Since(w.initAt) < after {
		return nil
	}
	if err := w.ctx.Finalize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED) {
		return err
	}
	w.initAt = time.Now()
	if err := w.ctx.Initialize(); err != nil && !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		return err
	}
	return nil
}

func (w *worker) slots(req wire.Request) response {
	if req.RescanAfterMS > 0 {
		if err := w.rescan(false, time.Duration(req.RescanAfterMS)*time.Millisecond); err != nil {
			return fail(req.ID, classify("C_Initialize", err))
		}
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	list, err := w.presentSlots()
	if err != nil {
		return fail(req.ID, classify("C_GetSlotList", err))
	}
	return response{Response: wire.Response{ID: req.ID, Slots: list}}
}

// presentSlots lists slots with a token. Caller holds mu for reading.
func (w *worker) presentSlots() ([]wire.Slot, error) {
	ids, err := w.ctx.GetSlotList(true)
	if err != nil {
		return nil, err
	}
	out := make([]wire.Slot, 0, len(ids))
	for _, id := range ids {
		ti, err := w.ctx.GetTokenInfo(id)
		if err != nil {
			continue // a token going away or not recognised: not present
		}
		si, _ := w.ctx.GetSlotInfo(id)
		out = append(out, wire.Slot{ID: id, Description: clean(si.SlotDescription), Token: tokenInfo(ti)})
	}
	return out, nil
}

func tokenInfo(ti pkcs11.TokenInfo) wire.TokenInfo {
	return wire.TokenInfo{
		TokenRef: wire.TokenRef{
			Label:        clean(ti.Label),
			Manufacturer: clean(ti.ManufacturerID),
			Model:        clean(ti.Model),
			Serial:       clean(ti.SerialNumber),
		},
		Flags:     ti.Flags,
		MinPINLen: ti.MinPinLen,
		MaxPINLen: ti.MaxPinLen,
	}
}

// clean trims the blank (and NUL) padding of PKCS#11 fixed-width strings.
func clean(s string) string { return strings.TrimRight(s, " \x00") }

func sameToken(a, b wire.TokenRef) bool { return a == b }

// withToken finds the slot holding ref and calls fn with the token locked
// against other operations on it. A token not found triggers one forced
// rescan (it may have been re-inserted since the last one) before it is
// reported removed.
func (w *worker) withToken(ref *wire.TokenRef, fn func(slot uint, ti wire.TokenInfo) *wire.Error) *wire.Error {
	if ref == nil {
		return &wire.Error{Kind: wire.KindProtocol, Message: "no token named"}
	}
	lock := w.tokenLock(*ref)
	lock.Lock()
	defer lock.Unlock()
	for attempt := 0; ; attempt++ {
		w.mu.RLock()
		slot, ti, found, err := w.findToken(*ref)
		if err == nil && found {
			e := fn(slot, ti)
			w.mu.RUnlock()
			return e
		}
		w.mu.RUnlock()
		if err != nil {
			return classify("C_GetSlotList", err)
		}
		if attempt > 0 {
			return &wire.Error{Kind: wire.KindTokenRemoved, Message: fmt.Sprintf("token %q is not present", ref.Label)}
		}
		if err := w.rescan(true, 0); err != nil {
			return classify("C_Initialize", err)
		}
	}
}

func (w *worker) tokenLock(ref wire.TokenRef) *sync.Mutex {
	key := ref.Manufacturer + "\x00" + ref.Model + "\x00" + ref.Serial + "\x00" + ref.Label
	w.tlMu.Lock()
	defer w.tlMu.Unlock()
	l, ok := w.tokenLocks[key]
	if !ok {
		l = new(sync.Mutex)
		w.tokenLocks[key] = l
	}
	return l
}

// findToken looks ref up among the present slots. Caller holds mu for
// reading.
func (w *worker) findToken(ref wire.TokenRef) (uint, wire.TokenInfo, bool, error) {
	list, err := w.presentSlots()
	if err != nil {
		return 0, wire.TokenInfo{}, false, err
	}
	for _, s := range list {
		if sameToken(s.Token.TokenRef, ref) {
			return s.ID, s.Token, true, nil
		}
	}
	return 0, wire.TokenInfo{}, false, nil
}

func (w *worker) objects(req wire.Request) response {
	var objs wire.Objects
	e := w.withToken(req.Token, func(slot uint, ti wire.TokenInfo) *wire.Error {
		objs.Token = ti
		s, err := w.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return classify("C_OpenSession", err)
		}
		defer func() { _ = w.ctx.CloseSession(s) }()
		certs, err := w.find(s, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_CERTIFICATE),
			pkcs11.NewAttribute(pkcs11.CKA_CERTIFICATE_TYPE, pkcs11.CKC_X_509),
		})
		if err != nil {
			return classify("C_FindObjects", err)
		}
		for _, o := range certs {
			a := w.attrs(s, o, pkcs11.CKA_ID, pkcs11.CKA_LABEL, pkcs11.CKA_VALUE)
			if len(a[pkcs11.CKA_VALUE]) == 0 {
				continue
			}
			objs.Certs = append(objs.Certs, wire.Cert{ID: a[pkcs11.CKA_ID], Label: string(a[pkcs11.CKA_LABEL]), Value: a[pkcs11.CKA_VALUE]})
		}
		for _, class := range []uint{pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY} {
			keys, err := w.find(s, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)})
			if err != nil {
				return classify("C_FindObjects", err)
			}
			for _, o := range keys {
				k := wire.Key{Private: class == pkcs11.CKO_PRIVATE_KEY}
				if k.Private {
					a := w.attrs(s, o, pkcs11.CKA_ID, pkcs11.CKA_LABEL, pkcs11.CKA_KEY_TYPE,
						pkcs11.CKA_ALWAYS_AUTHENTICATE, pkcs11.CKA_SIGN, pkcs11.CKA_DECRYPT, pkcs11.CKA_DERIVE)
					k.ID, k.Label, k.KeyType = a[pkcs11.CKA_ID], string(a[pkcs11.CKA_LABEL]), ulong(a[pkcs11.CKA_KEY_TYPE])
					k.AlwaysAuth, k.Sign = boolean(a[pkcs11.CKA_ALWAYS_AUTHENTICATE]), boolean(a[pkcs11.CKA_SIGN])
					k.Decrypt, k.Derive = boolean(a[pkcs11.CKA_DECRYPT]), boolean(a[pkcs11.CKA_DERIVE])
				} else {
					a := w.attrs(s, o, pkcs11.CKA_ID, pkcs11.CKA_LABEL, pkcs11.CKA_KEY_TYPE)
					k.ID, k.Label, k.KeyType = a[pkcs11.CKA_ID], string(a[pkcs11.CKA_LABEL]), ulong(a[pkcs11.CKA_KEY_TYPE])
				}
				objs.Keys = append(objs.Keys, k)
			}
		}
		return nil
	})
	if e != nil {
		return fail(req.ID, e)
	}
	return response{Response: wire.Response{ID: req.ID, Objects: &objs}}
}

// find returns the handles of the objects matching template.
func (w *worker) find(s pkcs11.SessionHandle, template []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := w.ctx.FindObjectsInit(s, template); err != nil {
		return nil, err
	}
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := w.ctx.FindObjects(s, 64)
		if err != nil {
			_ = w.ctx.FindObjectsFinal(s)
			return nil, err
		}
		all = append(all, hs...)
		if len(hs) == 0 || len(all) > 10000 {
			break
		}
	}
	return all, w.ctx.FindObjectsFinal(s)
}

// attrs reads attributes; one the object lacks (or hides) is absent from
// the result rather than failing the others.
func (w *worker) attrs(s pkcs11.SessionHandle, o pkcs11.ObjectHandle, types ...uint) map[uint][]byte {
	out := make(map[uint][]byte, len(types))
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, t := range types {
		tmpl[i] = pkcs11.NewAttribute(t, nil)
	}
	if got, err := w.ctx.GetAttributeValue(s, o, tmpl); err == nil {
		for _, a := range got {
			out[a.Type] = a.Value
		}
		return out
	}
	for _, t := range types {
		got, err := w.ctx.GetAttributeValue(s, o, []*pkcs11.Attribute{pkcs11.NewAttribute(t, nil)})
		if err == nil && len(got) == 1 {
			out[t] = got[0].Value
		}
	}
	return out
}

// ulong decodes a CK_ULONG attribute value (native byte order and size).
func ulong(b []byte) uint {
	var v uint
	switch len(b) {
	case 8:
		for i := 7; i >= 0; i-- {
			v = v<<8 | uint(b[i])
		}
	case 4:
		for i := 3; i >= 0; i-- {
			v = v<<8 | uint(b[i])
		}
	default:
		return ^uint(0)
	}
	return v
}

func boolean(b []byte) bool { return len(b) == 1 && b[0] != 0 }

// prepare checks what can be checked before the user is asked for a PIN:
// the token is present, its PIN is not locked, it has the mechanism, and
// (where a public key object allows a trial without login) it accepts the
// mechanism's parameters.
func (w *worker) prepare(req wire.Request) response {
	var info wire.TokenInfo
	e := w.withToken(req.Token, func(slot uint, ti wire.TokenInfo) *wire.Error {
		info = ti
		if req.Mechanism == nil {
			return nil
		}
		mechs, err := w.ctx.GetMechanismList(slot)
		if err != nil {
			return classify("C_GetMechanismList", err)
		}
		if !slices.ContainsFunc(mechs, func(m *pkcs11.Mechanism) bool { return m.Mechanism == req.Mechanism.Type }) {
			return &wire.Error{Kind: wire.KindUnsupported, Func: "C_GetMechanismList",
				Message: fmt.Sprintf("token %q does not support %s", ti.Label, wire.MechanismName(req.Mechanism.Type))}
		}
		return w.probe(slot, req)
	})
	if e != nil {
		return fail(req.ID, e)
	}
	return response{Response: wire.Response{ID: req.ID, Token: &info}}
}

// probe tries the mechanism with its parameters on the key's public half,
// when the token shows one without login, so that parameters the token
// refuses (SoftHSM's OAEP with SHA-256) fail before the PIN prompt.
func (w *worker) probe(slot uint, req wire.Request) *wire.Error {
	m := req.Mechanism
	if m.Type != wire.CKM_RSA_PKCS_OAEP && m.Type != wire.CKM_RSA_PKCS_PSS {
		return nil
	}
	s, err := w.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
	if err != nil {
		return classify("C_OpenSession", err)
	}
	defer func() { _ = w.ctx.CloseSession(s) }() // ends the trial operation
	pubs, err := w.find(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_ID, req.KeyID),
	})
	if err != nil || len(pubs) != 1 {
		return nil
	}
	mech, err := mechanism(m)
	if err != nil {
		return &wire.Error{Kind: wire.KindUnsupported, Message: err.Error()}
	}
	fn := "C_EncryptInit"
	if m.Type == wire.CKM_RSA_PKCS_PSS {
		fn = "C_VerifyInit"
		err = w.ctx.VerifyInit(s, mech, pubs[0])
	} else {
		err = w.ctx.EncryptInit(s, mech, pubs[0])
	}
	if err != nil {
		if e := classify(fn, err); e.Kind == wire.KindUnsupported {
			return e
		}
	}
	return nil
}

// mechanism builds the library's mechanism from the wire form.
func mechanism(m *wire.Mechanism) ([]*pkcs11.Mechanism, error) {
	switch m.Type {
	case wire.CKM_RSA_PKCS, wire.CKM_ECDSA:
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(m.Type, nil)}, nil
	case wire.CKM_RSA_PKCS_PSS:
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(m.Type, pkcs11.NewPSSParams(m.Hash, m.MGF, m.SaltLen))}, nil
	case wire.CKM_RSA_PKCS_OAEP:
		// CKZ_DATA_SPECIFIED is the only source the standard defines; an
		// empty label is "specified" too (SoftHSM insists).
		return []*pkcs11.Mechanism{pkcs11.NewMechanism(m.Type, pkcs11.NewOAEPParams(m.Hash, m.MGF, pkcs11.CKZ_DATA_SPECIFIED, m.Label))}, nil
	}
	return nil, fmt.Errorf("unexpected %s", wire.MechanismName(m.Type))
}

// operate performs one private-key operation: open a session, log in,
// find the key, Init, log in again for CKA_ALWAYS_AUTHENTICATE keys, run
// it, log out, close the session.
func (w *worker) operate(req wire.Request, pin []byte) response {
	var result response
	result.ID = req.ID
	e := w.withToken(req.Token, func(slot uint, ti wire.TokenInfo) *wire.Error {
		if ti.Flags&wire.CKF_USER_PIN_LOCKED != 0 && req.Login != wire.LoginNone {
			return &wire.Error{Kind: wire.KindPinLocked, Message: "the token reports its PIN locked"}
		}
		s, err := w.ctx.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return classify("C_OpenSession", err)
		}
		defer func() { _ = w.ctx.CloseSession(s) }()
		if req.Login != wire.LoginNone {
			if e := w.login(s, pkcs11.CKU_USER, req, pin); e != nil {
				return e
			}
			defer func() { _ = w.ctx.Logout(s) }()
		}
		key, alwaysAuth, e := w.privateKey(s, req)
		if e != nil {
			return e
		}
		contextLogin := alwaysAuth && req.Login != wire.LoginNone
		switch req.Op {
		case wire.OpSign:
			mech, err := mechanism(req.Mechanism)
			if err != nil {
				return &wire.Error{Kind: wire.KindUnsupported, Message: err.Error()}
			}
			if err := w.ctx.SignInit(s, mech, key); err != nil {
				return classify("C_SignInit", err)
			}
			if contextLogin {
				if e := w.login(s, pkcs11.CKU_CONTEXT_SPECIFIC, req, pin); e != nil {
					return e
				}
			}
			sig, err := w.ctx.Sign(s, req.Data)
			if err != nil {
				return classify("C_Sign", err)
			}
			result.Result = sig
		case wire.OpDecrypt:
			mech, err := mechanism(req.Mechanism)
			if err != nil {
				return &wire.Error{Kind: wire.KindUnsupported, Message: err.Error()}
			}
			if err := w.ctx.DecryptInit(s, mech, key); err != nil {
				return classify("C_DecryptInit", err)
			}
			if contextLogin {
				if e := w.login(s, pkcs11.CKU_CONTEXT_SPECIFIC, req, pin); e != nil {
					return e
				}
			}
			pt, err := w.ctx.Decrypt(s, req.Data)
			if err != nil {
				return classify("C_Decrypt", err)
			}
			result.secret = pt
		case wire.OpDerive:
			if contextLogin {
				// C_DeriveKey has no Init step; modules that want a
				// context-specific login for derivation take it here,
				// others (SoftHSM) answer CKR_OPERATION_NOT_INITIALIZED.
				err := w.lib.login(s, pkcs11.CKU_CONTEXT_SPECIFIC, pin)
				if err != nil && !isCode(err, pkcs11.CKR_OPERATION_NOT_INITIALIZED) {
					return classify("C_Login", err)
				}
			}
			z, e := w.derive(s, key, req)
			if e != nil {
				return e
			}
			result.secret = z
		}
		return nil
	})
	if e != nil {
		clear(result.secret)
		return fail(req.ID, e)
	}
	return result
}

// login logs in as userType with the request's PIN (or the PIN pad). A
// token that says the user is already logged in (another application on a
// shared module) is logged out first: every use needs the PIN.
func (w *worker) login(s pkcs11.SessionHandle, userType uint, req wire.Request, pin []byte) *wire.Error {
	if req.Login == wire.LoginPINPad {
		pin = nil
	} else if len(pin) == 0 {
		return &wire.Error{Kind: wire.KindProtocol, Message: "no PIN sent"}
	}
	err := w.lib.login(s, userType, pin)
	if userType == pkcs11.CKU_USER && isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		_ = w.ctx.Logout(s)
		err = w.lib.login(s, userType, pin)
	}
	if err != nil {
		return classify("C_Login", err)
	}
	return nil
}

// privateKey finds the private key with the request's CKA_ID and reads
// its CKA_ALWAYS_AUTHENTICATE.
func (w *worker) privateKey(s pkcs11.SessionHandle, req wire.Request) (pkcs11.ObjectHandle, bool, *wire.Error) {
	keys, err := w.find(s, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_ID, req.KeyID),
	})
	if err != nil {
		return 0, false, classify("C_FindObjects", err)
	}
	switch len(keys) {
	case 0:
		return 0, false, &wire.Error{Kind: wire.KindKeyNotFound, Message: fmt.Sprintf("no private key with CKA_ID %x on the token", req.KeyID)}
	case 1:
	default:
		return 0, false, &wire.Error{Kind: wire.KindKeyNotFound, Message: fmt.Sprintf("%d private keys share CKA_ID %x", len(keys), req.KeyID)}
	}
	a := w.attrs(s, keys[0], pkcs11.CKA_KEY_TYPE, pkcs11.CKA_ALWAYS_AUTHENTICATE)
	if kt, ok := a[pkcs11.CKA_KEY_TYPE]; ok && ulong(kt) != req.KeyType {
		return 0, false, &wire.Error{Kind: wire.KindKeyNotFound, Message: fmt.Sprintf("the key with CKA_ID %x has key type %d, want %d", req.KeyID, ulong(kt), req.KeyType)}
	}
	return keys[0], boolean(a[pkcs11.CKA_ALWAYS_AUTHENTICATE]), nil
}

// derive runs CKM_ECDH1_DERIVE into a session-only generic secret, reads
// its value (the shared secret Z) and destroys it.
func (w *worker) derive(s pkcs11.SessionHandle, key pkcs11.ObjectHandle, req wire.Request) ([]byte, *wire.Error) {
	mech := []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_ECDH1_DERIVE,
		pkcs11.NewECDH1DeriveParams(pkcs11.CKD_NULL, nil, req.Data))}
	tmpl := []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, req.ValueLen),
	}
	h, err := w.ctx.DeriveKey(s, mech, key, tmpl)
	if err != nil {
		return nil, classify("C_DeriveKey", err)
	}
	defer func() { _ = w.ctx.DestroyObject(s, h) }()
	got, err := w.ctx.GetAttributeValue(s, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)})
	if err != nil {
		return nil, classify("C_GetAttributeValue", err)
	}
	if len(got) != 1 || len(got[0].Value) != req.ValueLen {
		return nil, &wire.Error{Kind: wire.KindOther, Func: "C_GetAttributeValue", Message: "derived secret has the wrong length"}
	}
	return got[0].Value, nil
}
