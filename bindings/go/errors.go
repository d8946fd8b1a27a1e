package edgebuf

// Error is a failed call: the library's result code, its name ("EDGEBUF_ERR_FULL") and the
// library's message for it (edgebuf_last_error, one readable sentence).
//
// Every error this package returns is an *Error. errors.Is(err, ErrFull) compares codes, so it
// matches any *Error with the code of the sentinel whatever its message.
type Error struct {
	Code    int
	Name    string
	Message string
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "edgebuf: " + e.Name
	}
	return "edgebuf: " + e.Name + ": " + e.Message
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t != nil && e != nil && t.Code == e.Code
}

// Result codes (the C API section of the README); the values are fixed forever.
const (
	codeOK              = 0
	codeInvalidArgument = 1
	codeInvalidConfig   = 2
	codeInvalidRecord   = 3
	codeFull            = 4
	codeTimeout         = 5
	codeClosed          = 6
	codeStorage         = 7
	codeLocked          = 8
	codeCorrupt         = 9
	codeBufferTooSmall  = 10
	codeInternal        = 99
)

// Sentinels for errors.Is. Do not modify them.
var (
	// A nil argument; Flush, Sync or Close called from the Buffer's own event function.
	ErrInvalidArgument = sentinel(codeInvalidArgument)
	// An unknown key or bad value (the message names the key), a missing path or endpoint.
	ErrInvalidConfig = sentinel(codeInvalidConfig)
	// Not exactly one JSON value, not UTF-8, nested deeper than 128 or longer than
	// record.max_bytes; nothing was stored.
	ErrInvalidRecord = sentinel(codeInvalidRecord)
	// The record was not stored because the buffer is full (capacity.when_full).
	ErrFull = sentinel(codeFull)
	// Flush, Sync or Close ran out of time; nothing is lost.
	ErrTimeout = sentinel(codeTimeout)
	// The Buffer is closed or closing.
	ErrClosed = sentinel(codeClosed)
	// The disk failed.
	ErrStorage = sentinel(codeStorage)
	// Another handle or process holds this buffer file.
	ErrLocked = sentinel(codeLocked)
	// The buffer file is damaged (storage.on_corrupt=fail) or is not an edgebuf file.
	ErrCorrupt = sentinel(codeCorrupt)
	// Internal to StatusJSON; never returned by this package.
	ErrBufferTooSmall = sentinel(codeBufferTooSmall)
	// A bug in the library.
	ErrInternal = sentinel(codeInternal)
)

var codeNames = map[int]string{
	codeOK:              "EDGEBUF_OK",
	codeInvalidArgument: "EDGEBUF_ERR_INVALID_ARGUMENT",
	codeInvalidConfig:   "EDGEBUF_ERR_INVALID_CONFIG",
	codeInvalidRecord:   "EDGEBUF_ERR_INVALID_RECORD",
	codeFull:            "EDGEBUF_ERR_FULL",
	codeTimeout:         "EDGEBUF_ERR_TIMEOUT",
	codeClosed:          "EDGEBUF_ERR_CLOSED",
	codeStorage:         "EDGEBUF_ERR_STORAGE",
	codeLocked:          "EDGEBUF_ERR_LOCKED",
	codeCorrupt:         "EDGEBUF_ERR_CORRUPT",
	codeBufferTooSmall:  "EDGEBUF_ERR_BUFFER_TOO_SMALL",
	codeInternal:        "EDGEBUF_ERR_INTERNAL",
}

func sentinel(code int) *Error {
	return &Error{Code: code, Name: codeNames[code]}
}

func newError(code int, msg string) *Error {
	name, ok := codeNames[code]
	if !ok {
		name = resultName(code)
	}
	return &Error{Code: code, Name: name, Message: msg}
}
