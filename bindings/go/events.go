package edgebuf

/*
#include <stdint.h>
*/
import "C"

import (
	"runtime/cgo"
	"strconv"
)

// EventKind is EDGEBUF_EVENT_*.
type EventKind int32

const (
	EventOnline       EventKind = 1 // the endpoint answers 2xx again
	EventOffline      EventKind = 2 // an outage or a configuration problem; HTTPStatus says which
	EventDelivered    EventKind = 3 // Count records acknowledged (coalesced)
	EventDropped      EventKind = 4 // Count records removed by policy (coalesced)
	EventDeadLetter   EventKind = 5 // Count records moved to the dead letters
	EventStorageError EventKind = 6 // the disk fails; records are held in memory
	EventQuarantined  EventKind = 7 // a damaged file was set aside at open
	EventBacklogHigh  EventKind = 8 // pending records crossed alert.pending_records
	EventStorageOK    EventKind = 9 // the disk works again
	// Count records of a delivered batch the OTLP endpoint reported as rejected; Message is its
	// errorMessage.
	EventRejected        EventKind = 10
	EventBudgetExhausted EventKind = 11 // http.budget_bytes is spent for the period
)

var eventNames = map[EventKind]string{
	EventOnline: "ONLINE", EventOffline: "OFFLINE", EventDelivered: "DELIVERED",
	EventDropped: "DROPPED", EventDeadLetter: "DEAD_LETTER", EventStorageError: "STORAGE_ERROR",
	EventQuarantined: "QUARANTINED", EventBacklogHigh: "BACKLOG_HIGH", EventStorageOK: "STORAGE_OK",
	EventRejected: "REJECTED", EventBudgetExhausted: "BUDGET_EXHAUSTED",
}

func (k EventKind) String() string {
	if s, ok := eventNames[k]; ok {
		return s
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is one library event, copied into Go memory.
type Event struct {
	Kind       EventKind
	Count      uint64 // records concerned
	HTTPStatus int    // 0 where none applies
	Message    string // one sentence
}

// edgebufGoEvent is called by the C trampoline on the library's event thread. The handle is
// a cgo.Handle holding the user's func(Event); it is deleted only after edgebuf_close returned,
// when no callback can run any more.
//
//export edgebufGoEvent
func edgebufGoEvent(kind C.int32_t, count C.uint64_t, httpStatus C.int32_t, message *C.char, handle C.uintptr_t) {
	fn, ok := cgo.Handle(handle).Value().(func(Event))
	if !ok || fn == nil {
		return
	}
	fn(Event{
		Kind:       EventKind(kind),
		Count:      uint64(count),
		HTTPStatus: int(httpStatus),
		Message:    C.GoString(message),
	})
}
