package store

import (
	"bytes"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestEtcdLogRedactsRequests: etcd's slow-request warnings log the key
// read ("request") and what was found ("response"); both are redacted,
// the rest of the warning is kept.
func TestEtcdLogRedactsRequests(t *testing.T) {
	var b bytes.Buffer
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&b), zap.WarnLevel)
	log := zap.New(redactCore{core}).With(zap.String("component", "etcd"))
	log.Warn("apply request took too long", zap.Duration("took", 0), zap.String("prefix", "read-only range "),
		zap.String("request", `key:"/opendps/dir/secret-instance"`), zap.String("response", "range_response_count:1 secret"))
	log.With(zap.String("request", "secret-with")).Warn("again")
	log.Info("dropped", zap.String("request", "secret-info"))
	got := b.String()
	if strings.Contains(got, "secret") {
		t.Errorf("etcd log carries keys or values:\n%s", got)
	}
	if !strings.Contains(got, `"msg":"apply request took too long"`) || !strings.Contains(got, `"request":"redacted"`) ||
		!strings.Contains(got, `"prefix":"read-only range "`) || !strings.Contains(got, `"component":"etcd"`) {
		t.Errorf("the warning lost more than its request:\n%s", got)
	}
}
