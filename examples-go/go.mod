module edgebuf.example/onnxloop

go 1.22

require (
	github.com/edgebuf/edgebuf/bindings/go v0.0.0
	github.com/yalue/onnxruntime_go v1.27.0
)

// The Go binding of this checkout (it links ../target/release/libedgebuf.so).
replace github.com/edgebuf/edgebuf/bindings/go => ../bindings/go
