package hub

import "time"

// Wire values of the IoT Hub registry API (api-version 2021-04-12; see the
// azure-iothub npm package, dist/registry.js and dist/device.js, and the
// iothub data-plane REST specification).
const (
	// APIVersion is the registry API version this client speaks.
	APIVersion = "2021-04-12"

	// OwnerPolicy is the name of the built-in full-rights policy of a hub.
	OwnerPolicy = "iothubowner"
)

// Status is the enablement of a device identity.
type Status string

// Device statuses. The empty Status means StatusEnabled when creating.
const (
	StatusEnabled  Status = "enabled"
	StatusDisabled Status = "disabled"
)

// AuthType is authentication.type of a device identity.
type AuthType string

// Authentication types, as IoT Hub spells them.
const (
	AuthSAS        AuthType = "sas"                  // symmetric keys
	AuthSelfSigned AuthType = "selfSigned"           // X.509 thumbprints
	AuthCA         AuthType = "certificateAuthority" // X.509 chain to a hub CA
	AuthNone       AuthType = "none"
)

// Device is a device identity as the registry API reads and writes it.
// Fields the service owns (generationId, etag, connection state, times) are
// ignored when sent; the zero values of the others mean "not set".
type Device struct {
	DeviceID     string          `json:"deviceId"`
	GenerationID string          `json:"generationId,omitempty"`
	ETag         string          `json:"etag,omitempty"`
	Status       Status          `json:"status,omitempty"`
	StatusReason string          `json:"statusReason,omitempty"`
	Auth         *Authentication `json:"authentication,omitempty"`
	Capabilities *Capabilities   `json:"capabilities,omitempty"`
	DeviceScope  string          `json:"deviceScope,omitempty"`
	ParentScopes []string        `json:"parentScopes,omitempty"`

	ConnectionState            string    `json:"connectionState,omitempty"`
	ConnectionStateUpdatedTime time.Time `json:"connectionStateUpdatedTime,omitzero"`
	StatusUpdatedTime          time.Time `json:"statusUpdatedTime,omitzero"`
	LastActivityTime           time.Time `json:"lastActivityTime,omitzero"`
}

// Authentication is authentication of a device identity. A nil
// *Authentication on create means a sas device with generated keys.
type Authentication struct {
	Type           AuthType        `json:"type,omitempty"`
	SymmetricKey   *SymmetricKey   `json:"symmetricKey,omitempty"`
	X509Thumbprint *X509Thumbprint `json:"x509Thumbprint,omitempty"`
}

// SymmetricKey holds base64 keys. Empty keys of a sas device are generated
// by the hub.
type SymmetricKey struct {
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
}

// X509Thumbprint holds hex SHA-1 or SHA-256 certificate thumbprints.
type X509Thumbprint struct {
	PrimaryThumbprint   string `json:"primaryThumbprint,omitempty"`
	SecondaryThumbprint string `json:"secondaryThumbprint,omitempty"`
}

// Capabilities of a device identity.
type Capabilities struct {
	IoTEdge bool `json:"iotEdge"`
}

// Twin is a device twin. As a patch (UpdateTwin) only Tags and
// Properties.Desired are sent; a nil map value deletes that key.
type Twin struct {
	DeviceID           string          `json:"deviceId,omitempty"`
	ETag               string          `json:"etag,omitempty"`
	DeviceETag         string          `json:"deviceEtag,omitempty"`
	Version            int64           `json:"version,omitempty"`
	Status             Status          `json:"status,omitempty"`
	AuthenticationType AuthType        `json:"authenticationType,omitempty"`
	X509Thumbprint     *X509Thumbprint `json:"x509Thumbprint,omitempty"`
	Capabilities       *Capabilities   `json:"capabilities,omitempty"`
	ConnectionState    string          `json:"connectionState,omitempty"`
	Tags               map[string]any  `json:"tags,omitempty"`
	Properties         TwinProperties  `json:"properties,omitzero"`
}

// TwinProperties are the desired and reported property documents. The hub
// adds "$version" and "$metadata" keys to each.
type TwinProperties struct {
	Desired  map[string]any `json:"desired,omitempty"`
	Reported map[string]any `json:"reported,omitempty"`
}

// IsZero reports whether both documents are nil (for omitzero).
func (p TwinProperties) IsZero() bool { return p.Desired == nil && p.Reported == nil }
