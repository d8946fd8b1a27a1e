module github.com/edgebuf/edgebuf/bindings/go

go 1.22
