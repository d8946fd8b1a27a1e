module edgebuf.example/onnxloop

go 1.22

require (
	github.com/edgebuf/edgebuf/bindings/go v0.0.0
	github.com/yalue/onnxruntime_go v1.27.0
)

// The Go binding of this checkout (built with -tags edgebuf_repo it links
// ../target/release/libedgebuf.so; without the tag, the installed library through pkg-config).
replace github.com/edgebuf/edgebuf/bindings/go => ../bindings/go
