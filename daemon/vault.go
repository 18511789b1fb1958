package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/daemon/config"
	"github.com/smimed/smimed/keystore"
)

// OpenVault opens the key store backend that keystore.backend names:
//
//   - "secret-service": the Secret Service on bus (gnome-keyring, KWallet);
//     an error when there is none.
//   - "file": the encrypted-file vault in keysDir (on Windows the same
//     files, DPAPI-wrapped).
//   - "auto" (or ""): the Secret Service when it answers on bus, else the
//     file vault. Which one was chosen is logged.
func OpenVault(ctx context.Context, backend string, bus *dbus.Conn, keysDir string, logger *slog.Logger) (keystore.Vault, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	switch backend {
	case config.BackendFile:
		logger.Info("keystore: using the encrypted-file vault (keystore.backend = \"file\")", "dir", keysDir)
		return localVault(keysDir)
	case config.BackendSecretService:
		if bus == nil {
			return nil, errors.New("keystore.backend is \"secret-service\" but there is no session bus")
		}
		v, err := keystore.NewSecretServiceVault(ctx, keystore.SecretServiceOptions{Conn: bus, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("keystore.backend is \"secret-service\": %w", err)
		}
		logger.Info("keystore: using the Secret Service (keystore.backend = \"secret-service\")")
		return v, nil
	case config.BackendAuto, "":
		if bus != nil {
			v, err := keystore.NewSecretServiceVault(ctx, keystore.SecretServiceOptions{Conn: bus, Logger: logger})
			if err == nil {
				logger.Info("keystore: using the Secret Service (keystore.backend = \"auto\")")
				return v, nil
			}
			if !errors.Is(err, keystore.ErrUnavailable) {
				return nil, fmt.Errorf("keystore: the Secret Service answered but cannot be used: %w", err)
			}
			logger.Info("keystore: no Secret Service on the session bus; using the encrypted-file vault", "dir", keysDir)
		} else {
			logger.Info("keystore: no session bus; using the encrypted-file vault", "dir", keysDir)
		}
		return localVault(keysDir)
	}
	return nil, fmt.Errorf("keystore.backend %q is not auto, secret-service or file", backend)
}
