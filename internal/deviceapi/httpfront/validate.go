package httpfront

import "github.com/opendps/opendps/internal/deviceapi/devreq"

// The syntax checks are shared with the MQTT front end (devreq), so that
// a device sees the same refusals on every transport.
var (
	checkAPIVersion        = devreq.CheckAPIVersionQuery
	validateScope          = devreq.ValidateScope
	validateRegistrationID = devreq.ValidateRegistrationID
	validateOperationID    = devreq.ValidateOperationID
	clip                   = devreq.Clip
)
