package cloudevents

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Validation is an Event Grid schema subscription validation event: Event Grid expects the code back in
// the response body, {"validationResponse": code}, before it delivers anything.
type Validation struct {
	Code string
	URL  string
}

// ValidationOf reports whether ev is a subscription validation event and, if so, returns its code.
func ValidationOf(ev Event) (Validation, bool, error) {
	if ev.Type != TypeSubscriptionValidation {
		return Validation{}, false, nil
	}
	var data struct {
		ValidationCode string `json:"validationCode"`
		ValidationURL  string `json:"validationUrl"`
	}
	if ev.Data == nil {
		return Validation{}, true, fmt.Errorf("%w: validation event without data", ErrMalformed)
	}
	if err := json.Unmarshal(ev.Data, &data); err != nil {
		return Validation{}, true, fmt.Errorf("%w: validation event data: %s", ErrMalformed, jsonReason(err))
	}
	if data.ValidationCode == "" {
		return Validation{}, true, fmt.Errorf("%w: validation event without data.validationCode", ErrMalformed)
	}
	return Validation{Code: data.ValidationCode, URL: data.ValidationURL}, true, nil
}

// ValidationResponse is the body that completes the Event Grid schema handshake.
func ValidationResponse(v Validation) []byte {
	b, _ := json.Marshal(struct {
		ValidationResponse string `json:"validationResponse"`
	}{v.Code})
	return b
}

// Origins is the list of origins allowed by the CloudEvents webhook abuse-protection handshake
// (CloudEvents "HTTP 1.1 Web Hooks for Event Delivery", section 4).
type Origins []string

// Allows reports whether origin, from a WebHook-Request-Origin header, may deliver events. Host names
// compare case-insensitively; "*" allows every origin.
func (o Origins) Allows(origin string) bool {
	origin = strings.TrimSpace(origin)
	if origin == "" {
		return false
	}
	for _, a := range o {
		if a == "*" || strings.EqualFold(a, origin) {
			return true
		}
	}
	return false
}
