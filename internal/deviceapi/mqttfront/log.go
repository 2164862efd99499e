package mqttfront

import (
	"context"
	"log/slog"
)

// debugOnly logs every record of the MQTT library at Debug: its warnings
// (a client's protocol error, a low keep-alive) are about one client and
// would let any client flood the server's log. It keeps only the
// attributes that cannot identify a device (loggedAttrs): the library
// logs the client id (the registration id), packets and payloads, which
// a node must not log, also for devices whose requests it only forwards
// to another region (docs/dr.md, data residency).
type debugOnly struct{ h slog.Handler }

// loggedAttrs are the MQTT library's attributes kept in the log; every
// other one ("client", "pk", "packet", "payload", "data", "id", "key",
// "topic", "filters", ...) is replaced by "redacted".
var loggedAttrs = map[string]bool{
	"error": true, "listener": true, "remote": true, "old_remote": true, "new_remote": true,
	"hook": true, "method": true, "len": true, "version": true, "expire": true, "component": true,
}

func (d debugOnly) Enabled(ctx context.Context, _ slog.Level) bool {
	return d.h.Enabled(ctx, slog.LevelDebug)
}

func (d debugOnly) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, slog.LevelDebug, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redact(a))
		return true
	})
	return d.h.Handle(ctx, out)
}

func redact(a slog.Attr) slog.Attr {
	if loggedAttrs[a.Key] {
		return a
	}
	return slog.String(a.Key, "redacted")
}

func (d debugOnly) WithAttrs(as []slog.Attr) slog.Handler {
	kept := make([]slog.Attr, len(as))
	for i, a := range as {
		kept[i] = redact(a)
	}
	return debugOnly{d.h.WithAttrs(kept)}
}

func (d debugOnly) WithGroup(n string) slog.Handler { return debugOnly{d.h.WithGroup(n)} }
