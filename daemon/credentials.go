package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/smimed/smimed/daemon/directory"
	"github.com/smimed/smimed/keystore"
)

// directoryCredentials returns the LDAP directories' credentials callback
// (a directory.CredentialsFunc). A server URL without the RFC 4516
// bindname extension binds anonymously. With one, the password is the key
// store's (keystore.Store.DirectoryPassword: the Secret Service item with
// xdg:schema org.smimed.DirectoryPassword, server = the URL's
// scheme://host:port, bindname = the DN) — never the configuration file's.
//
// The password's bytes are handed to the directory without a copy; it
// zeroes them once the bind is done. They are never logged. A password that
// cannot be had is an error (the directory turns it into that server's
// ErrBind, and CertsFind into the reason directory-auth-failed) with a log
// line saying why, and for a missing one how to store it.
func directoryCredentials(store *keystore.Store, logger *slog.Logger) directory.CredentialsFunc {
	return func(ctx context.Context, serverURL string) (string, []byte, error) {
		srv, err := directory.ParseURL(serverURL)
		if err != nil {
			return "", nil, err
		}
		if srv.BindDN == "" {
			return "", nil, nil
		}
		origin := srv.Origin()
		pw, err := store.DirectoryPassword(ctx, origin, srv.BindDN)
		switch {
		case err == nil:
			// The Secret's own bytes: the directory clears them after the
			// bind, which wipes the Secret too.
			return srv.BindDN, pw.Bytes(), nil
		case errors.Is(err, keystore.ErrNotFound):
			logger.WarnContext(ctx, "directory: no password stored for "+origin+" as "+srv.BindDN+
				"; store it with: secret-tool store --label='smimed directory' xdg:schema "+keystore.DirectoryPasswordSchema+
				" server "+origin+" bindname '"+srv.BindDN+"'",
				"server", origin, "bindname", srv.BindDN)
			return "", nil, fmt.Errorf("no password stored for %s as %q (key store item xdg:schema %s, server %s, bindname %s)",
				origin, srv.BindDN, keystore.DirectoryPasswordSchema, origin, srv.BindDN)
		case errors.Is(err, keystore.ErrUnsupportedBackend):
			logger.WarnContext(ctx, "directory: the password for "+origin+" as "+srv.BindDN+
				" cannot be read: the "+store.Backend()+" key store holds no directory passwords (use the Secret Service: keystore.backend)",
				"server", origin, "bindname", srv.BindDN)
			return "", nil, fmt.Errorf("the password for %s as %q cannot be read: %w", origin, srv.BindDN, err)
		default:
			logger.WarnContext(ctx, "directory: the password for "+origin+" as "+srv.BindDN+" cannot be read",
				"server", origin, "bindname", srv.BindDN, "err", err)
			return "", nil, fmt.Errorf("the password for %s as %q cannot be read: %w", origin, srv.BindDN, err)
		}
	}
}
