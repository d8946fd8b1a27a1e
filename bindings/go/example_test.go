package edgebuf_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	edgebuf "github.com/edgebuf/edgebuf/bindings/go"
)

func Example() {
	// A stand-in for the cloud endpoint; in production "endpoint" is your ingest URL.
	ingest := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // a JSON array of {"id","seq","ts_ms","source","data"}
		w.WriteHeader(http.StatusOK)
	}))
	defer ingest.Close()
	dir, err := os.MkdirTemp("", "edgebuf-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	buf, err := edgebuf.OpenWithEvents(edgebuf.Config{
		"path":                  filepath.Join(dir, "predictions.db"),
		"endpoint":              ingest.URL,
		"http.header.X-Api-Key": "not-a-real-key",
		"http.proxy":            "none", // the receiver is local; the default follows HTTPS_PROXY etc.
	}, func(ev edgebuf.Event) {
		if ev.Kind == edgebuf.EventOffline {
			log.Printf("edgebuf offline (HTTP %d): %s", ev.HTTPStatus, ev.Message)
		}
	})
	if err != nil {
		log.Fatal(err) // errors.Is(err, edgebuf.ErrLocked): another process uses the file
	}

	// The inference loop: Log never waits on the network.
	for i := 0; i < 3; i++ {
		err := buf.LogJSON(map[string]any{"model": "resnet18", "class": i, "score": 0.92})
		if err != nil {
			log.Print(err) // ErrInvalidRecord, or ErrFull with capacity.when_full=reject
		}
	}

	// Wait for delivery (optional: records are sent in the background anyway).
	if err := buf.Flush(10 * time.Second); errors.Is(err, edgebuf.ErrTimeout) {
		fmt.Println("offline: the records stay on disk and are sent later")
	}
	st, err := buf.Status()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("logged %d, delivered %d, pending %d, %s\n",
		st.LoggedTotal, st.DeliveredTotal, st.PendingRecords, st.Connectivity)

	// Close writes what is in memory to disk and delivers for up to 5 s; ErrTimeout means
	// records stay on disk for the next Open.
	if err := buf.Close(5 * time.Second); err != nil {
		log.Print(err)
	}
	// Output: logged 3, delivered 3, pending 0, online
}
