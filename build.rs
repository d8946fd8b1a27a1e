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

    // The default of clock.valid_after_unix_ms (src/config/keys.rs): a wall clock earlier than
    // the library's build time is not set yet. SOURCE_DATE_EPOCH (seconds) makes it reproducible.
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let build_ms = match env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
    {
        Some(secs) => secs.saturating_mul(1000),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    println!(
        "cargo:rustc-env=EDGEBUF_BUILD_UNIX_MS={}",
        build_ms.min(i64::MAX as u64)
    );

    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libedgebuf.so.{major}");
    }

    let mut config = cbindgen::Config::from_file(dir.join("cbindgen.toml"))
        .expect("cbindgen.toml is readable and valid");
    // Every field is initialised explicitly: `{ sizeof(edgebuf_status_t) }` alone trips
    // -Wmissing-field-initializers (part of -Wextra) in C and C++.
    let zeros = ", 0".repeat(status_field_count(&dir) - 1);
    config.after_includes = Some(format!(
        "\n#define EDGEBUF_VERSION_MAJOR {major}\n#define EDGEBUF_VERSION_MINOR {minor}\n#define EDGEBUF_VERSION_PATCH {patch}\n\n/** Initializer that sets struct_size (and zeroes the rest): edgebuf_status_t st = EDGEBUF_STATUS_INIT; */\n#define EDGEBUF_STATUS_INIT {{ sizeof(edgebuf_status_t){zeros} }}\n"
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

/// The number of fields of `edgebuf_status_t` in src/ffi/types.rs (for EDGEBUF_STATUS_INIT).
fn status_field_count(dir: &std::path::Path) -> usize {
    let src = std::fs::read_to_string(dir.join("src/ffi/types.rs"))
        .expect("src/ffi/types.rs is readable");
    let body = src
        .split_once("pub struct edgebuf_status_t {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(body, _)| body)
        .expect("src/ffi/types.rs defines edgebuf_status_t");
    let n = body
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("pub ") && l.contains(':'))
        .count();
    assert!(n >= 2, "edgebuf_status_t has {n} fields");
    n
}
