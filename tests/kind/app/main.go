// Command kind-app is the workload the kind suite (tests/kind) deploys: a container that
// consumes a Secret synced by vaultsync the two ways applications do, and reports both.
//
//	GET /  ->  {"env": "<$SECRET_VALUE at start>", "file": "<$SECRET_FILE now>", "pod": ..., "started": ...}
//
// The environment is read once, as a process does; the file is read on every request, so
// the kubelet's in-place update of a mounted Secret shows without a restart. It reports the
// values themselves: the suite's values are test data, never real secrets.
package main

import (
	"encoding/json"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	env := os.Getenv("SECRET_VALUE")
	file := os.Getenv("SECRET_FILE")
	pod := os.Getenv("POD_NAME")
	started := time.Now().UTC().Format(time.RFC3339Nano)
	http.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		body, err := os.ReadFile(file)
		report := map[string]string{"env": env, "file": string(body), "pod": pod, "started": started}
		if err != nil {
			report["fileError"] = err.Error()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(report)
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	log.Printf("kind-app %s serving on :8080", pod)
	server := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(server.ListenAndServe())
}
