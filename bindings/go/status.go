package edgebuf

import "strconv"

// Status is edgebuf_status_t with the C API's field names in Go case. The invariant
// PendingRecords = PendingAtOpen + LoggedTotal - DeliveredTotal - DroppedTotal -
// DeadLetteredTotal holds in every snapshot.
type Status struct {
	PendingRecords      uint64 // accepted and not yet settled (memory + disk + in flight)
	PendingBytes        uint64 // their length as given to Log
	DiskBytes           uint64 // st_size of the database + -wal + -shm
	LoggedTotal         uint64 // accepted by Log since open
	DeliveredTotal      uint64 // acknowledged (2xx) by the endpoint since open
	DroppedTotal        uint64 // removed by the capacity policy or record.ttl_ms since open
	DeadLetterRecords   uint64 // records in the dead-letter table now
	FailedAttemptsTotal uint64 // requests since open that got no 2xx
	ConsecutiveFailures uint32 // failed attempts in a row now; a 2xx resets it
	NextRetryInMs       uint32 // 0 when not waiting
	OldestPendingAgeMs  uint64 // age of the oldest pending record, 0 when none
	LastSuccessUnixMs   int64  // 0 when none since open
	LastHTTPStatus      int32  // status of the last answer of any class; 0 when none
	Connectivity        Connectivity
	StorageDegraded     bool   // the disk fails and records are held in memory only
	PendingAtOpen       uint64 // pending records found in the file at open
	DeadLetteredTotal   uint64 // records moved to the dead letters since open
	// records of delivered batches the endpoint reported as rejected (OTLP partial success);
	// already counted in DeliveredTotal
	RejectedTotal   uint64
	SentBytesTotal  uint64 // request body bytes sent since open, as on the wire, every attempt
	BudgetLeftBytes uint64 // what http.budget_bytes still allows; math.MaxUint64 without a budget
}

// Connectivity is EDGEBUF_CONNECTIVITY_*.
type Connectivity uint32

const (
	ConnectivityUnknown Connectivity = 0
	ConnectivityOnline  Connectivity = 1
	ConnectivityOffline Connectivity = 2
)

func (c Connectivity) String() string {
	switch c {
	case ConnectivityUnknown:
		return "unknown"
	case ConnectivityOnline:
		return "online"
	case ConnectivityOffline:
		return "offline"
	}
	return "Connectivity(" + strconv.FormatUint(uint64(c), 10) + ")"
}
