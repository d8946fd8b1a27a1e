//! Generates include/edgebuf.h with cbindgen and gives the shared library its SONAME.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_else(|_| "0".into());
    let patch = env::var("CARGO_PKG_VERSION_PATCH").unwrap_or_else(|_| "0".into());

    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libedgebuf.so.{major}");
        let script = dir.join("edgebuf.map");
        println!("cargo:rerun-if-changed=edgebuf.map");
        println!(
            "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
            script.display()
        );
    }

    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    config.after_includes = Some(format!(
        "\n#define EDGEBUF_VERSION_MAJOR {major}\n#define EDGEBUF_VERSION_MINOR {minor}\n#define EDGEBUF_VERSION_PATCH {patch}\n\n/** Initializer that sets struct_size: edgebuf_status_t st = EDGEBUF_STATUS_INIT; */\n#define EDGEBUF_STATUS_INIT {{ sizeof(edgebuf_status_t) }}\n"
    ));
    match cbindgen::Builder::new()
        .with_src(dir.join("src/ffi/mod.rs"))
        .with_src(dir.join("src/ffi/types.rs"))
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            bindings.write_to_file(dir.join("include").join("edgebuf.h"));
        }
        Err(e) => panic!("cbindgen could not generate include/edgebuf.h: {e}"),
    }
}
