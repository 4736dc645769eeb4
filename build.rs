//! Packs the code the daemon runs at rest together (ARCHITECTURE.md "Memory at rest").
//!
//! `link/idle-code.ld` lists the functions `smshub bench idle` runs once start-up is over, and
//! places their sections side by side before the rest of the code, so the pages a resting daemon
//! keeps mapped are few. Release builds for Linux only: the script is a linker-script `INSERT`
//! (GNU ld and lld both take it, and it changes nothing but where those functions sit), and a
//! debug build is not what a clinic runs.
use std::path::Path;

fn main() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("link/idle-code.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    if linux && release && script.exists() {
        // The compiler driver's own `-T`: one argument for the path, whatever characters it has.
        println!("cargo:rustc-link-arg-bins=-T");
        println!("cargo:rustc-link-arg-bins={}", script.display());
    }
}
