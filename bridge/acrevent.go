package bridge

import "github.com/natsbridge/acr-nats-bridge/acrevent"

// The envelope, its decoding and the subject encoding are acrevent's, the package consumers import; the
// bridge names them here as well, one definition under two names.
type (
	Envelope          = acrevent.Envelope
	EventData         = acrevent.EventData
	Target            = acrevent.Target
	Request           = acrevent.Request
	Actor             = acrevent.Actor
	Source            = acrevent.Source
	ConnectedRegistry = acrevent.ConnectedRegistry
	Subjects          = acrevent.Subjects
	SubjectParts      = acrevent.SubjectParts
)

// The envelope's CloudEvents types.
const (
	TypeImagePushed      = acrevent.TypeImagePushed
	TypeImageDeleted     = acrevent.TypeImageDeleted
	TypeChartPushed      = acrevent.TypeChartPushed
	TypeChartDeleted     = acrevent.TypeChartDeleted
	TypeImageQuarantined = acrevent.TypeImageQuarantined
	TypePing             = acrevent.TypePing
	HeaderError          = acrevent.HeaderError
	HeaderOrigin         = acrevent.HeaderOrigin
)

// Decoding and subject encoding, as acrevent has them.
var (
	ErrNotEnvelope    = acrevent.ErrNotEnvelope
	ErrSubjectTooLong = acrevent.ErrSubjectTooLong
	ErrBadToken       = acrevent.ErrBadToken
	DecodeMessage     = acrevent.DecodeMessage
	DecodeEnvelope    = acrevent.DecodeEnvelope
	IsACRType         = acrevent.IsACRType
	EncodeToken       = acrevent.EncodeToken
	DecodeToken       = acrevent.DecodeToken
	EncodeRepository  = acrevent.EncodeRepository
	DecodeRepository  = acrevent.DecodeRepository
)
