package allocate

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/opendps/opendps/internal/model"
)

// Webhook limits.
const (
	// DefaultWebhookTimeout bounds one webhook call, body included.
	DefaultWebhookTimeout = 10 * time.Second
	// MaxWebhookResponse bounds the webhook's answer.
	MaxWebhookResponse = 1 << 20
	// excerptLen bounds the part of a webhook answer quoted in messages.
	excerptLen = 256
)

// AllocationRequest is the body POSTed to a custom allocation webhook
// (§7.4). One of IndividualEnrollment and EnrollmentGroup is set, with its
// attestation redacted to {"type": ...}.
type AllocationRequest struct {
	IndividualEnrollment *model.IndividualEnrollment `json:"individualEnrollment,omitempty"`
	EnrollmentGroup      *model.EnrollmentGroup      `json:"enrollmentGroup,omitempty"`
	DeviceRuntimeContext DeviceRuntimeContext        `json:"deviceRuntimeContext"`
	// LinkedHubs are the host names the webhook may choose from.
	LinkedHubs []string `json:"linkedHubs"`
}

// DeviceRuntimeContext describes the registering device. The current hub
// is sent under both spellings DPS documents (currentIotHubHostName in its
// JSON examples, currentIoTHubHostName in its tables).
type DeviceRuntimeContext struct {
	RegistrationID        string                `json:"registrationId"`
	CurrentIotHubHostName string                `json:"currentIotHubHostName,omitempty"`
	CurrentIoTHubHostName string                `json:"currentIoTHubHostName,omitempty"`
	CurrentDeviceID       string                `json:"currentDeviceId,omitempty"`
	SymmetricKey          *struct{}             `json:"symmetricKey,omitempty"` // always {}: keys are never sent
	X509                  *X509RuntimeContext   `json:"x509,omitempty"`
	TPM                   *model.TPMAttestation `json:"tpm,omitempty"`
	Payload               json.RawMessage       `json:"payload,omitempty"`
}

// X509RuntimeContext is the certificate details of an X.509 device. DPS
// does not document its X509DeviceAttestation shape; opendps uses the
// names of registrationState.x509 (§2.4).
type X509RuntimeContext struct {
	CertificateInfo        *model.X509CertificateInfo `json:"certificateInfo,omitempty"`
	SigningCertificateInfo *model.X509CertificateInfo `json:"signingCertificateInfo,omitempty"`
}

// AllocationResponse is the webhook's answer. Field names are matched
// case-insensitively (encoding/json).
type AllocationResponse struct {
	IoTHubHostName string             `json:"iotHubHostName"`
	InitialTwin    *model.InitialTwin `json:"initialTwin,omitempty"`
	Payload        json.RawMessage    `json:"payload,omitempty"`
}

// Webhook calls custom allocation webhooks. The zero value is ready to
// use. A Webhook is safe for concurrent use; set its fields before the
// first call and do not copy it afterwards.
type Webhook struct {
	// Timeout bounds each call (connect, request, answer). Zero means
	// DefaultWebhookTimeout.
	Timeout time.Duration
	// TLSConfig is the client TLS configuration (nil: system roots).
	// Ignored when Client is set.
	TLSConfig *tls.Config
	// Client, when set, is used as is. Otherwise a client is built that
	// does not follow redirects (a 3xx is a failure: the request body
	// never goes to another URL).
	Client *http.Client

	once   sync.Once
	client *http.Client // set by once
}

func (w *Webhook) httpClient() *http.Client {
	w.once.Do(func() {
		if w.client = w.Client; w.client != nil {
			return
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = w.TLSConfig.Clone() // the transport may add "h2": never to a shared config
		w.client = &http.Client{
			Transport:     t,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	})
	return w.client
}

func (w *Webhook) timeout() time.Duration {
	if w.Timeout <= 0 {
		return DefaultWebhookTimeout
	}
	return w.Timeout
}

// Call POSTs body to the webhook of def and returns its answer, whose
// IoTHubHostName is one of body.LinkedHubs (spelled as there). Failures
// are *Error with CodeCustomAllocationFailed; if ctx itself ends, its
// error is returned wrapped instead.
func (w *Webhook) Call(ctx context.Context, def *model.CustomAllocationDefinition, body *AllocationRequest) (*AllocationResponse, error) {
	data, err := json.Marshal(body)
	if err != nil {
		return nil, webhookFail(ErrWebhook, err, "cannot encode the allocation request: %v", err)
	}
	tctx, cancel := context.WithTimeout(ctx, w.timeout())
	defer cancel()
	req, err := http.NewRequestWithContext(tctx, http.MethodPost, def.WebhookURL, bytes.NewReader(data))
	if err != nil || (req.URL.Scheme != "https" && req.URL.Scheme != "http") {
		return nil, webhookFail(ErrWebhookTimeout, nil, "customAllocationDefinition.webhookUrl is not an http(s) URL")
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "opendps")
	resp, err := w.httpClient().Do(req)
	if err != nil {
		return nil, w.transportError(ctx, err, def.WebhookURL)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxWebhookResponse+1))
	if err != nil {
		return nil, w.transportError(ctx, err, def.WebhookURL)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, webhookFail(ErrWebhookStatus, nil, "custom allocation webhook answered HTTP %s: %s", resp.Status, excerpt(raw))
	}
	if len(raw) > MaxWebhookResponse {
		return nil, webhookFail(ErrWebhookResponse, nil, "custom allocation webhook answered more than %d bytes", MaxWebhookResponse)
	}
	return parseResponse(raw, body.LinkedHubs)
}

// transportError classifies a failed exchange. The URL (whose query holds
// the function key) appears only redacted, and only in the cause.
func (w *Webhook) transportError(ctx context.Context, err error, rawURL string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("allocate: custom allocation webhook: %w", ctx.Err())
	}
	inner := err
	var ue *url.Error
	if errors.As(err, &ue) {
		inner = ue.Err
	}
	cause := fmt.Errorf("POST %s: %w", redactURL(rawURL), inner)
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return webhookFail(ErrWebhookTimeout, cause, "custom allocation webhook did not answer within %s", w.timeout())
	}
	return webhookFail(ErrWebhookTimeout, cause, "custom allocation webhook could not be reached: %v", inner)
}

// parseResponse decodes the answer and checks its hub against linked.
func parseResponse(raw []byte, linked []string) (*AllocationResponse, error) {
	var r AllocationResponse
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, webhookFail(ErrWebhookResponse, err, "custom allocation webhook answered invalid JSON (%v): %s", err, excerpt(raw))
	}
	r.Payload = normPayload(r.Payload)
	if r.IoTHubHostName == "" {
		return nil, webhookFail(ErrWebhookHub, nil, "custom allocation webhook answered without iotHubHostName: %s", excerpt(raw))
	}
	for _, h := range linked {
		if strings.EqualFold(h, r.IoTHubHostName) {
			r.IoTHubHostName = h
			return &r, nil
		}
	}
	return nil, webhookFail(ErrWebhookHub, nil, "custom allocation webhook chose IoT hub %q, which is not one of the offered linkedHubs [%s]",
		clip(r.IoTHubHostName), strings.Join(linked, ", "))
}

// normPayload turns an absent or null payload into nil.
func normPayload(p json.RawMessage) json.RawMessage {
	if s := bytes.TrimSpace(p); len(s) == 0 || string(s) == "null" {
		return nil
	}
	return p
}

// excerpt quotes the start of a webhook answer as printable text.
func excerpt(raw []byte) string {
	s := strings.ToValidUTF8(string(raw[:min(len(raw), excerptLen)]), "?")
	s = strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s))
	if s == "" {
		return "(empty body)"
	}
	if len(raw) > excerptLen {
		s += "..."
	}
	return s
}

// redactURL hides the query (the function key) as DPS does ("?****").
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexByte(raw, '?'); i >= 0 {
			return raw[:i] + "?****"
		}
		return raw
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "****"
	}
	return u.String()
}

func clip(s string) string {
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}
