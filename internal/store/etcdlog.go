package store

import (
	"bytes"
	"io"
	"os"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// noisyOnClose are etcd log messages that a clean Close always produces
// (engine-bench.md pitfall 4); they are dropped.
var noisyOnClose = [][]byte{
	[]byte("setting up serving from embedded etcd failed"),
	[]byte("Running http and grpc server on single port"),
	[]byte("simple token is not cryptographically signed"),
	[]byte("grpc server due to error"),
}

type filterWriter struct{ w io.Writer }

func (f filterWriter) Write(p []byte) (int, error) {
	for _, n := range noisyOnClose {
		if bytes.Contains(p, n) {
			return len(p), nil
		}
	}
	return f.w.Write(p)
}

// etcdLogger returns a zap logger builder writing warnings and errors of the
// embedded member to stderr, minus known noise.
func etcdLogger() func(*embed.Config) error {
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(filterWriter{os.Stderr}), zap.WarnLevel)
	return embed.NewZapLoggerBuilder(zap.New(redactCore{core}).With(zap.String("component", "etcd")))
}

// redactedFields are the fields of etcd's slow-request warnings that
// carry keys and values (tenant data: an instance name, an enrollment
// id): a region that only forwards a request, or looks up an instance
// another region serves, must not log them (docs/dr.md, data residency).
var redactedFields = map[string]bool{"request": true, "response": true}

// redactCore replaces redactedFields by "redacted".
type redactCore struct{ zapcore.Core }

func redactFields(fs []zapcore.Field) []zapcore.Field {
	out := fs
	for i, f := range fs {
		if redactedFields[f.Key] {
			if &out[0] == &fs[0] {
				out = append([]zapcore.Field(nil), fs...)
			}
			out[i] = zap.String(f.Key, "redacted")
		}
	}
	return out
}

func (c redactCore) With(fs []zapcore.Field) zapcore.Core {
	return redactCore{c.Core.With(redactFields(fs))}
}

func (c redactCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c redactCore) Write(e zapcore.Entry, fs []zapcore.Field) error {
	return c.Core.Write(e, redactFields(fs))
}
