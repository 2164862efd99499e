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
	return embed.NewZapLoggerBuilder(zap.New(core).With(zap.String("component", "etcd")))
}
