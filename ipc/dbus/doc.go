// Package dbus serves an ipc.Service on the D-Bus session bus and provides a
// client that implements ipc.Service over it.
//
// The daemon owns the well-known name BusName and exports the object
// ObjectPath with the interface Interface. Each ipc.ErrorName travels as the
// D-Bus error "org.smimed.Error.<Name>". Structured results are JSON strings
// that carry the ipc types' JSON. Options are a{sv} dictionaries whose keys
// are the JSON names of the ipc request fields. Message payloads travel as
// Unix file descriptors. Byte-array variants exist for payloads of up to
// BytesLimit. docs/org.smimed.Smimed1.xml documents every method. A test
// checks that file against what the server returns from Introspect.
//
// A client may register a prompt agent (RegisterPromptAgent, interface
// AgentInterface on the client's own connection) that shows the prompts of
// its own requests; the server hands it to the Service in the request's
// context (ipc.PromptAgentFrom), and Client.RegisterPromptAgent exports one
// for any ipc.PromptAgent.
//
// The transport needs Unix file descriptor passing, so it builds only on Unix
// systems. Windows uses a named pipe instead.
package dbus
