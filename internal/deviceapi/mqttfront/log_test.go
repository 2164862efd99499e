package mqttfront

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestLibraryLogRedacted: the MQTT library's records are logged at Debug
// without the attributes that identify a device (the client id is the
// registration id), as the library writes them.
func TestLibraryLogRedacted(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(debugOnly{slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})}).With("component", "mochi")
	log.Debug("client disconnected", "error", "EOF", "client", "secret-device-1", "remote", "10.0.0.1:1234", "listener", "mqtt")
	log.Warn("error processing packet", "error", "bad", "client", "secret-device-2", "listener", "mqtt", "pk", "secret-packet-3")
	log.With("id", "secret-device-4").Info("x", "payload", "secret-payload-5")
	got := b.String()
	if strings.Contains(got, "secret") {
		t.Errorf("device identifiers logged:\n%s", got)
	}
	for _, want := range []string{"level=DEBUG msg=\"client disconnected\" component=mochi error=EOF client=redacted remote=10.0.0.1:1234 listener=mqtt",
		"level=DEBUG msg=\"error processing packet\""} {
		if !strings.Contains(got, want) {
			t.Errorf("log lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "WARN") || strings.Contains(got, "INFO") {
		t.Errorf("library records not lowered to Debug:\n%s", got)
	}
}
