//go:build unix

package dbus

import (
	"context"
	"encoding/json"
	"io"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/ipc"
)

// object is what the server exports at ObjectPath. godbus calls every
// exported method of it whose last result is *godbus.Error, each call on its
// own goroutine. The godbus.Message argument gives the sender and the raw
// body and is not part of the D-Bus signature. Each method is documented in
// methodDocs; the argument order here is the D-Bus argument order.
type object struct{ s *Server }

// Status answers Status.
func (o object) Status(m godbus.Message) (string, *godbus.Error) {
	var res string
	err := o.s.call(&m, "Status", func(ctx context.Context) error {
		st, err := o.s.svc.Status(ctx)
		if err != nil {
			return err
		}
		res, err = toJSON(st)
		return err
	})
	return res, err
}

// Identities answers Identities.
func (o object) Identities(m godbus.Message) (string, *godbus.Error) {
	return o.list(&m, "Identities", func(ctx context.Context) (any, error) {
		ids, err := o.s.svc.Identities(ctx)
		return nonNil(ids), err
	})
}

// Tokens answers Tokens.
func (o object) Tokens(m godbus.Message) (string, *godbus.Error) {
	return o.list(&m, "Tokens", func(ctx context.Context) (any, error) {
		ts, err := o.s.svc.Tokens(ctx)
		return nonNil(ts), err
	})
}

// ImportPKCS12 answers ImportPKCS12.
func (o object) ImportPKCS12(m godbus.Message, data []byte, opts map[string]godbus.Variant) (string, *godbus.Error) {
	var res string
	err := o.s.call(&m, "ImportPKCS12", func(ctx context.Context) error {
		var password []byte
		if v, ok := opts["password"]; ok {
			p, ok := v.Value().([]byte)
			if !ok || v.Signature().String() != "ay" {
				return badArg(`option "password" must have type ay`)
			}
			password = p
			if password == nil {
				password = []byte{} // present and empty is not "ask the user"
			}
			defer clear(password)
		}
		if err := o.s.checkSize(len(data)); err != nil {
			return err
		}
		id, err := o.s.svc.ImportPKCS12(ctx, data, password)
		if err != nil {
			return err
		}
		res, err = toJSON(id)
		return err
	})
	return res, err
}

// TrustAdd answers TrustAdd.
func (o object) TrustAdd(m godbus.Message, certs []byte) (string, *godbus.Error) {
	return o.list(&m, "TrustAdd", func(ctx context.Context) (any, error) {
		if err := o.s.checkSize(len(certs)); err != nil {
			return nil, err
		}
		cs, err := o.s.svc.TrustAdd(ctx, certs)
		return nonNil(cs), err
	})
}

// TrustList answers TrustList.
func (o object) TrustList(m godbus.Message) (string, *godbus.Error) {
	return o.list(&m, "TrustList", func(ctx context.Context) (any, error) {
		cs, err := o.s.svc.TrustList(ctx)
		return nonNil(cs), err
	})
}

// TrustRemove answers TrustRemove.
func (o object) TrustRemove(m godbus.Message, certs []byte) (string, *godbus.Error) {
	return o.list(&m, "TrustRemove", func(ctx context.Context) (any, error) {
		if err := o.s.checkSize(len(certs)); err != nil {
			return nil, err
		}
		cs, err := o.s.svc.TrustRemove(ctx, certs)
		return nonNil(cs), err
	})
}

// CertsAdd answers CertsAdd.
func (o object) CertsAdd(m godbus.Message, data []byte) (string, *godbus.Error) {
	return o.list(&m, "CertsAdd", func(ctx context.Context) (any, error) {
		if err := o.s.checkSize(len(data)); err != nil {
			return nil, err
		}
		cs, err := o.s.svc.CertsAdd(ctx, data)
		return nonNil(cs), err
	})
}

// CertsList answers CertsList.
func (o object) CertsList(m godbus.Message) (string, *godbus.Error) {
	return o.list(&m, "CertsList", func(ctx context.Context) (any, error) {
		cs, err := o.s.svc.CertsList(ctx)
		return nonNil(cs), err
	})
}

// CertsFind answers CertsFind.
func (o object) CertsFind(m godbus.Message, email string) (string, *godbus.Error) {
	return o.list(&m, "CertsFind", func(ctx context.Context) (any, error) {
		l, err := o.s.svc.CertsFind(ctx, email)
		l.Certificates = nonNil(l.Certificates)
		return l, err
	})
}

// Sign answers Sign.
func (o object) Sign(m godbus.Message, opts map[string]godbus.Variant, _, _ godbus.UnixFD) *godbus.Error {
	return o.s.call(&m, "Sign", func(ctx context.Context) error {
		return o.s.withStreams(ctx, m.Body, 1, 2, func(r io.Reader, w io.Writer) error {
			var req ipc.SignRequest
			if err := decodeOptions(opts, &req); err != nil {
				return badArg("%v", err)
			}
			return o.s.svc.Sign(ctx, req, r, w)
		})
	})
}

// Encrypt answers Encrypt.
func (o object) Encrypt(m godbus.Message, opts map[string]godbus.Variant, _, _ godbus.UnixFD) *godbus.Error {
	return o.s.call(&m, "Encrypt", func(ctx context.Context) error {
		return o.s.withStreams(ctx, m.Body, 1, 2, func(r io.Reader, w io.Writer) error {
			var req ipc.EncryptRequest
			if err := decodeOptions(opts, &req); err != nil {
				return badArg("%v", err)
			}
			return o.s.svc.Encrypt(ctx, req, r, w)
		})
	})
}

// Decrypt answers Decrypt.
func (o object) Decrypt(m godbus.Message, opts map[string]godbus.Variant, _, _ godbus.UnixFD) (string, *godbus.Error) {
	return o.open(&m, "Decrypt", opts, o.s.svc.Decrypt)
}

// Verify answers Verify.
func (o object) Verify(m godbus.Message, opts map[string]godbus.Variant, _, _ godbus.UnixFD) (string, *godbus.Error) {
	return o.open(&m, "Verify", opts, o.s.svc.Verify)
}

// SignBytes answers SignBytes.
func (o object) SignBytes(m godbus.Message, opts map[string]godbus.Variant, data []byte) ([]byte, *godbus.Error) {
	var res []byte
	err := o.s.call(&m, "SignBytes", func(ctx context.Context) error {
		var req ipc.SignRequest
		if err := decodeOptions(opts, &req); err != nil {
			return badArg("%v", err)
		}
		var err error
		res, err = o.s.withBytes(ctx, "Sign", data, func(r io.Reader, w io.Writer) error {
			return o.s.svc.Sign(ctx, req, r, w)
		})
		return err
	})
	return nonNil(res), err
}

// EncryptBytes answers EncryptBytes.
func (o object) EncryptBytes(m godbus.Message, opts map[string]godbus.Variant, data []byte) ([]byte, *godbus.Error) {
	var res []byte
	err := o.s.call(&m, "EncryptBytes", func(ctx context.Context) error {
		var req ipc.EncryptRequest
		if err := decodeOptions(opts, &req); err != nil {
			return badArg("%v", err)
		}
		var err error
		res, err = o.s.withBytes(ctx, "Encrypt", data, func(r io.Reader, w io.Writer) error {
			return o.s.svc.Encrypt(ctx, req, r, w)
		})
		return err
	})
	return nonNil(res), err
}

// DecryptBytes answers DecryptBytes.
func (o object) DecryptBytes(m godbus.Message, opts map[string]godbus.Variant, data []byte) ([]byte, string, *godbus.Error) {
	return o.openBytes(&m, "Decrypt", opts, data, o.s.svc.Decrypt)
}

// VerifyBytes answers VerifyBytes.
func (o object) VerifyBytes(m godbus.Message, opts map[string]godbus.Variant, data []byte) ([]byte, string, *godbus.Error) {
	return o.openBytes(&m, "Verify", opts, data, o.s.svc.Verify)
}

type openFunc func(context.Context, ipc.OpenRequest, io.Reader, io.Writer) (ipc.MessageStatus, error)

func (o object) list(m *godbus.Message, method string, fn func(context.Context) (any, error)) (string, *godbus.Error) {
	var res string
	err := o.s.call(m, method, func(ctx context.Context) error {
		v, err := fn(ctx)
		if err != nil {
			return err
		}
		res, err = toJSON(v)
		return err
	})
	return res, err
}

func (o object) open(m *godbus.Message, method string, opts map[string]godbus.Variant, fn openFunc) (string, *godbus.Error) {
	var res string
	err := o.s.call(m, method, func(ctx context.Context) error {
		return o.s.withStreams(ctx, m.Body, 1, 2, func(r io.Reader, w io.Writer) error {
			var req ipc.OpenRequest
			if err := decodeOptions(opts, &req); err != nil {
				return badArg("%v", err)
			}
			st, err := fn(ctx, req, r, w)
			if err != nil {
				return err
			}
			res, err = toJSON(st)
			return err
		})
	})
	return res, err
}

func (o object) openBytes(m *godbus.Message, method string, opts map[string]godbus.Variant, data []byte, fn openFunc) ([]byte, string, *godbus.Error) {
	var content []byte
	var status string
	err := o.s.call(m, method+"Bytes", func(ctx context.Context) error {
		var req ipc.OpenRequest
		if err := decodeOptions(opts, &req); err != nil {
			return badArg("%v", err)
		}
		var st ipc.MessageStatus
		var err error
		content, err = o.s.withBytes(ctx, method, data, func(r io.Reader, w io.Writer) error {
			var err error
			st, err = fn(ctx, req, r, w)
			return err
		})
		if err != nil {
			return err
		}
		status, err = toJSON(st)
		return err
	})
	return nonNil(content), status, err
}

func (s *Server) checkSize(n int) error {
	if int64(n) > s.maxBytes {
		return ipc.Errorf(ipc.TooLarge, "%d bytes exceed the limit of %d bytes", n, s.maxBytes)
	}
	return nil
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", ipc.Errorf(ipc.Internal, "encoding the result: %w", err)
	}
	return string(b), nil
}

// nonNil makes nil slices travel as [] in JSON and as empty arrays.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
