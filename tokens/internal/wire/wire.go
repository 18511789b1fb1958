// Package wire is the protocol between smimed and its PKCS#11 worker
// processes: one worker per module, requests and responses as frames on two
// pipes.
//
// A frame is
//
//	uint32 big-endian  length of the control part
//	uint32 big-endian  length of the secret part
//	control part       JSON (a Request or a Response)
//	secret part        raw bytes: the PIN in a request, the plaintext or shared
//	                   secret in a response; empty otherwise
//
// Secrets never pass through the JSON encoder, so both sides hold them in
// exactly one buffer of their own that they zero after use ([Frame.Wipe]).
//
// Requests carry an ID; the worker answers each with a Response of the same
// ID, possibly out of order (operations on different tokens run in
// parallel).
package wire

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxControl and MaxSecret bound a frame's parts; a frame beyond them is a
// protocol error (a confused or hostile peer), not a large message.
const (
	MaxControl = 16 << 20
	MaxSecret  = 64 << 10
)

// Operations a Request names.
const (
	// OpInit loads nothing new: it reports the module's C_GetInfo. The
	// worker has already called C_Initialize when it answers.
	OpInit = "init"
	// OpSlots lists the slots with a token present (C_GetSlotList(TRUE)
	// and C_GetTokenInfo), re-initialising the module first when
	// RescanAfterMS says so.
	OpSlots = "slots"
	// OpObjects lists a token's certificates and keys visible without
	// login.
	OpObjects = "objects"
	// OpPrepare checks, before the user is asked for a PIN, that the token
	// is there, that it has the mechanism, and returns its flags.
	OpPrepare = "prepare"
	// OpSign signs Data (a digest, or a DigestInfo for CKM_RSA_PKCS).
	OpSign = "sign"
	// OpDecrypt decrypts Data.
	OpDecrypt = "decrypt"
	// OpDerive performs CKM_ECDH1_DERIVE with Data as the other party's
	// public point and returns the shared secret.
	OpDerive = "derive"
)

// Error kinds a worker reports; the daemon maps them to its typed errors.
const (
	KindPinIncorrect = "pin-incorrect"
	KindPinLocked    = "pin-locked"
	KindTokenRemoved = "token-removed"
	KindUnsupported  = "unsupported"
	KindBadPadding   = "bad-padding"
	KindCancelled    = "cancelled"
	KindKeyNotFound  = "key-not-found"
	KindLoad         = "load"
	KindProtocol     = "protocol"
	KindOther        = "other"
)

// TokenRef names a token independently of slot numbers, which change when
// a module re-initialises or a reader is plugged elsewhere.
type TokenRef struct {
	Label        string `json:"label"`        // CKA_LABEL of the token (trimmed)
	Manufacturer string `json:"manufacturer"` // manufacturerID
	Model        string `json:"model"`        // model
	Serial       string `json:"serial"`       // serialNumber
}

// Mechanism is a PKCS#11 mechanism with the parameters smimed uses.
type Mechanism struct {
	// Type is the CKM_ value.
	Type uint `json:"type"`
	// Hash is the hash mechanism (CKM_SHA256, ...) for PSS and OAEP.
	Hash uint `json:"hash,omitempty"`
	// MGF is the CKG_MGF1_ value for PSS and OAEP.
	MGF uint `json:"mgf,omitempty"`
	// SaltLen is the PSS salt length.
	SaltLen uint `json:"salt_len,omitempty"`
	// Label is the OAEP label.
	Label []byte `json:"label,omitempty"`
}

// Request is one call from the daemon to a worker.
type Request struct {
	ID uint64 `json:"id"` // matches the Response
	Op string `json:"op"` // one of the Op constants
	// Token is the token operated on (all but init and slots).
	Token *TokenRef `json:"token,omitempty"`
	// KeyID is the key's CKA_ID (prepare, sign, decrypt, derive).
	KeyID []byte `json:"key_id,omitempty"`
	// KeyType is the expected CKA_KEY_TYPE (CKK_RSA, CKK_EC).
	KeyType uint `json:"key_type,omitempty"`
	// Mechanism is what prepare checks and sign/decrypt/derive use.
	Mechanism *Mechanism `json:"mechanism,omitempty"`
	// Data is the operation's input: a digest, a ciphertext, a public
	// point. Never secret.
	Data []byte `json:"data,omitempty"`
	// ValueLen is the length of the secret to derive.
	ValueLen int `json:"value_len,omitempty"`
	// Login says how to authenticate: LoginPIN (the secret part is the
	// PIN), LoginPINPad (C_Login with a NULL PIN; the reader asks), or
	// LoginNone (the token needs no login).
	Login string `json:"login,omitempty"`
	// RescanAfterMS asks the worker to re-initialise the module
	// (C_Finalize + C_Initialize) before listing when its last
	// initialisation is at least that old and no operation is in flight;
	// 0 never.
	RescanAfterMS int64 `json:"rescan_after_ms,omitempty"`
}

// Login modes of a Request.
const (
	LoginPIN    = "pin"
	LoginPINPad = "pin-pad"
	LoginNone   = "none"
)

// Error is a failure reported by a worker.
type Error struct {
	// Kind is one of the Kind constants.
	Kind string `json:"kind"`
	// Func is the PKCS#11 function that failed, e.g. "C_Login".
	Func string `json:"func,omitempty"`
	// Code is the CKR_ value, 0 when the failure is not a return code.
	Code uint `json:"code,omitempty"`
	// Message says what happened, for logs and error messages.
	Message string `json:"message"`
}

// Error returns the message with the function and return code.
func (e *Error) Error() string {
	switch {
	case e.Func != "" && e.Code != 0:
		return fmt.Sprintf("%s: %s (0x%X)", e.Func, e.Message, e.Code)
	case e.Func != "":
		return e.Func + ": " + e.Message
	}
	return e.Message
}

// ModuleInfo is a module's C_GetInfo.
type ModuleInfo struct {
	Description     string `json:"description"`      // libraryDescription
	Manufacturer    string `json:"manufacturer"`     // manufacturerID
	LibraryVersion  string `json:"library_version"`  // "major.minor"
	CryptokiVersion string `json:"cryptoki_version"` // "major.minor"
}

// TokenInfo is the part of C_GetTokenInfo smimed uses.
type TokenInfo struct {
	TokenRef
	Flags     uint `json:"flags"`       // CKF_ token flags
	MinPINLen uint `json:"min_pin_len"` // ulMinPinLen
	MaxPINLen uint `json:"max_pin_len"` // ulMaxPinLen
}

// Slot is a slot with a token present.
type Slot struct {
	ID          uint      `json:"id"`          // CK_SLOT_ID
	Description string    `json:"description"` // slotDescription
	Token       TokenInfo `json:"token"`       // the token in it
}

// Cert is a certificate object.
type Cert struct {
	ID    []byte `json:"id"`    // CKA_ID
	Label string `json:"label"` // CKA_LABEL
	Value []byte `json:"value"` // CKA_VALUE: the DER certificate
}

// Key is a key object (private or public).
type Key struct {
	Private bool   `json:"private"`  // CKO_PRIVATE_KEY, else CKO_PUBLIC_KEY
	ID      []byte `json:"id"`       // CKA_ID
	Label   string `json:"label"`    // CKA_LABEL
	KeyType uint   `json:"key_type"` // CKA_KEY_TYPE
	// AlwaysAuth is CKA_ALWAYS_AUTHENTICATE (private keys).
	AlwaysAuth bool `json:"always_auth,omitempty"`
	Sign       bool `json:"sign,omitempty"`    // CKA_SIGN
	Decrypt    bool `json:"decrypt,omitempty"` // CKA_DECRYPT
	Derive     bool `json:"derive,omitempty"`  // CKA_DERIVE
}

// Objects is what a token shows without login.
type Objects struct {
	Token TokenInfo `json:"token"` // the token listed
	Certs []Cert    `json:"certs"` // X.509 certificate objects
	Keys  []Key     `json:"keys"`  // private and public key objects
}

// Response is a worker's answer to the Request with the same ID.
type Response struct {
	ID      uint64      `json:"id"`                // the Request's
	Err     *Error      `json:"error,omitempty"`   // the failure; nothing else is set
	Info    *ModuleInfo `json:"info,omitempty"`    // init
	Slots   []Slot      `json:"slots,omitempty"`   // slots
	Objects *Objects    `json:"objects,omitempty"` // objects
	// Token is the token's current state (prepare, and operations).
	Token *TokenInfo `json:"token_info,omitempty"`
	// Result is a non-secret result (a signature). Decrypted data and
	// shared secrets travel in the frame's secret part.
	Result []byte `json:"result,omitempty"`
}

// Frame is a decoded frame: the control JSON and the secret part, each in
// a buffer the reader owns.
type Frame struct {
	Control []byte // the JSON
	Secret  []byte // the secret part, nil when empty
}

// Wipe zeroes both parts.
func (f *Frame) Wipe() {
	clear(f.Control)
	clear(f.Secret)
	f.Secret = nil
}

// FrameError is the type of ErrFrame.
type FrameError string

// Error returns the message.
func (e FrameError) Error() string { return string(e) }

// ErrFrame reports a malformed frame.
const ErrFrame FrameError = "wire: malformed frame"

// ReadFrame reads one frame from r. io.EOF means the peer closed the pipe
// between frames.
func ReadFrame(r io.Reader) (*Frame, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: truncated header", ErrFrame)
		}
		return nil, err
	}
	nc := binary.BigEndian.Uint32(hdr[0:4])
	ns := binary.BigEndian.Uint32(hdr[4:8])
	if nc > MaxControl || ns > MaxSecret {
		return nil, fmt.Errorf("%w: %d+%d bytes", ErrFrame, nc, ns)
	}
	f := &Frame{Control: make([]byte, nc)}
	if _, err := io.ReadFull(r, f.Control); err != nil {
		return nil, fmt.Errorf("%w: truncated control part: %v", ErrFrame, err)
	}
	if ns > 0 {
		f.Secret = make([]byte, ns)
		if _, err := io.ReadFull(r, f.Secret); err != nil {
			f.Wipe()
			return nil, fmt.Errorf("%w: truncated secret part: %v", ErrFrame, err)
		}
	}
	return f, nil
}

// WriteFrame writes control (marshalled to JSON) and secret as one frame.
// The secret is written straight from the caller's buffer; nothing here
// keeps a copy. Calls must not overlap on one writer.
func WriteFrame(w io.Writer, control any, secret []byte) error {
	js, err := json.Marshal(control)
	if err != nil {
		return fmt.Errorf("wire: encode: %w", err)
	}
	if len(js) > MaxControl || len(secret) > MaxSecret {
		return fmt.Errorf("%w: %d+%d bytes", ErrFrame, len(js), len(secret))
	}
	buf := make([]byte, 8, 8+len(js))
	binary.BigEndian.PutUint32(buf[0:4], uint32(len(js)))
	binary.BigEndian.PutUint32(buf[4:8], uint32(len(secret)))
	buf = append(buf, js...)
	if _, err := w.Write(buf); err != nil {
		return err
	}
	if len(secret) > 0 {
		if _, err := w.Write(secret); err != nil {
			return err
		}
	}
	return nil
}
