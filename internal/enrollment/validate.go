package enrollment

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"strings"

	"github.com/opendps/opendps/internal/model"
)

// Limits of the service API (spec/dps-protocol.md §1.2, §6.3, §9).
const (
	// MaxIDLen bounds registration ids and enrollment group ids.
	MaxIDLen = 128
	// MaxDeviceIDLen bounds IoT Hub device ids.
	MaxDeviceIDLen = 128
	// MinKeyBytes and MaxKeyBytes bound the decoded length of a
	// user-supplied symmetric key.
	MinKeyBytes = 16
	MaxKeyBytes = 64
	// GeneratedKeyBytes is the length of keys the service generates.
	GeneratedKeyBytes = 64
	// MaxBulkItems bounds the items of one bulk operation.
	MaxBulkItems = 10
)

// ValidateID checks a registration id or enrollment group id: 1 to 128
// characters among A-Z a-z 0-9 - . _ :, the last one alphanumeric or '-'.
// Ids are case-insensitive; what names the field goes in the message.
func ValidateID(what, id string) error {
	if id == "" {
		return invalid("%s is required.", what)
	}
	if len(id) > MaxIDLen {
		return invalid("%s is longer than %d characters.", what, MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return invalid("%s %q contains %q; allowed are letters, digits, '-', '.', '_' and ':'.", what, id, id[i])
		}
	}
	if last := id[len(id)-1]; !isAlnum(last) && last != '-' {
		return invalid("%s %q must end with a letter, a digit or '-'.", what, id)
	}
	return nil
}

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isIDChar(c byte) bool { return isAlnum(c) || c == '-' || c == '.' || c == '_' || c == ':' }

// deviceIDSpecials are the punctuation IoT Hub allows in device ids.
const deviceIDSpecials = "-.+%_#*?!(),:=@$'"

// ValidateDeviceID checks an IoT Hub device id: up to 128 ASCII letters,
// digits and -.+%_#*?!(),:=@$' characters. Empty is valid (the device id
// then defaults to the registration id).
func ValidateDeviceID(id string) error {
	if len(id) > MaxDeviceIDLen {
		return invalid("deviceId is longer than %d characters.", MaxDeviceIDLen)
	}
	for i := 0; i < len(id); i++ {
		if !isAlnum(id[i]) && !strings.ContainsRune(deviceIDSpecials, rune(id[i])) {
			return invalid("deviceId %q contains %q, which IoT Hub does not allow.", id, id[i])
		}
	}
	return nil
}

// ValidateKey checks a user-supplied symmetric key: standard base64 of 16
// to 64 bytes.
func ValidateKey(field, key string) error {
	b, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return invalid("%s is not valid base64.", field)
	}
	if len(b) < MinKeyBytes || len(b) > MaxKeyBytes {
		return invalid("%s must decode to %d to %d bytes, not %d.", field, MinKeyBytes, MaxKeyBytes, len(b))
	}
	return nil
}

// GenerateKey returns a new random key: base64 of 64 bytes.
func GenerateKey() string {
	b := make([]byte, GeneratedKeyBytes)
	rand.Read(b) // never fails (crypto/rand since Go 1.24)
	return base64.StdEncoding.EncodeToString(b)
}

// canonical returns the canonical spelling of v among values, compared
// case-insensitively, or "" when v is none of them.
func canonical(v string, values ...string) string {
	for _, c := range values {
		if strings.EqualFold(v, c) {
			return c
		}
	}
	return ""
}

// normalizeCommon validates and normalises the enumerations and free-form
// fields shared by enrollments and groups (everything but attestation and
// hubs, which need the store).
func normalizeCommon(c *model.EnrollmentCommon) error {
	switch c.ProvisioningStatus {
	case "":
		c.ProvisioningStatus = model.StatusEnabled
	default:
		if c.ProvisioningStatus = canonical(c.ProvisioningStatus, model.StatusEnabled, model.StatusDisabled); c.ProvisioningStatus == "" {
			return invalid("provisioningStatus must be %q or %q.", model.StatusEnabled, model.StatusDisabled)
		}
	}
	if c.AllocationPolicy != "" {
		c.AllocationPolicy = canonical(c.AllocationPolicy, model.AllocationHashed, model.AllocationGeoLatency, model.AllocationStatic, model.AllocationCustom)
		if c.AllocationPolicy == "" {
			return invalid("allocationPolicy must be one of hashed, geoLatency, static, custom.")
		}
	}
	if c.Capabilities == nil {
		c.Capabilities = &model.Capabilities{}
	}
	if err := validateTwin(c.InitialTwin); err != nil {
		return err
	}
	return validateCustom(c)
}

// validateCustom checks customAllocationDefinition: required for the custom
// policy, and well formed whenever present.
func validateCustom(c *model.EnrollmentCommon) error {
	d := c.CustomAllocationDefinition
	if d == nil {
		if c.AllocationPolicy == model.AllocationCustom {
			return invalid("allocationPolicy custom requires customAllocationDefinition with webhookUrl and apiVersion.")
		}
		return nil
	}
	u, err := url.Parse(d.WebhookURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return invalid("customAllocationDefinition.webhookUrl must be an absolute https or http URL.")
	}
	if strings.TrimSpace(d.APIVersion) == "" {
		return invalid("customAllocationDefinition.apiVersion is required.")
	}
	return nil
}

// validateTwin checks that the twin collections are JSON objects.
func validateTwin(t *model.InitialTwin) error {
	if t == nil {
		return nil
	}
	if err := requireObject("initialTwin.tags", t.Tags); err != nil {
		return err
	}
	if t.Properties != nil {
		return requireObject("initialTwin.properties.desired", t.Properties.Desired)
	}
	return nil
}

// requireObject accepts an absent or null value, or a JSON object.
func requireObject(field string, raw json.RawMessage) error {
	v := bytes.TrimSpace(raw)
	if len(v) == 0 || bytes.Equal(v, []byte("null")) {
		return nil
	}
	if v[0] != '{' || !json.Valid(v) {
		return invalid("%s must be a JSON object.", field)
	}
	return nil
}
