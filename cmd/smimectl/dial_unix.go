//go:build unix

package main

import (
	"context"
	"errors"

	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/ipc/dbus"
)

// dial connects to smimed on the D-Bus bus at address ("" = the session
// bus). The client hands *os.File payloads to the daemon as descriptors.
func dial(ctx context.Context, address string) (ipc.Service, error) {
	c, err := dbus.Dial(ctx, dbus.ClientOptions{Address: address})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// unreachable reports whether err means no daemon answered.
func unreachable(err error) bool { return errors.Is(err, dbus.ErrUnreachable) }
