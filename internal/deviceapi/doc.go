// Package deviceapi groups the device runtime front ends of opendps
// (spec/dps-protocol.md §2 HTTPS, §4 MQTT): httpfront serves the HTTPS
// device API; mqttfront serves MQTT over TLS and over WebSocket; devreq
// holds the checks and renderings they share. Front ends parse the wire
// and call the provisioning engine (internal/engine); they hold no
// provisioning logic of their own.
//
// The front ends are reachable without authentication, so they stay lean:
// deps_test.go asserts that nothing under internal/deviceapi imports the
// control plane, the service API, instance management, the CLI or the web
// console (STYLE §5).
package deviceapi
