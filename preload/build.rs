//! Compiles the exec functions that take variadic arguments (`src/exec/variadic.c`), which
//! stable Rust cannot define, and exports them from the library.

/// The functions `variadic.c` defines; `exports.map` lists them too.
const VARIADIC: [&str; 3] = ["execl", "execle", "execlp"];

fn main() {
    cc::Build::new()
        .file("src/exec/variadic.c")
        .warnings(true)
        .compile("netcon_variadic");
    println!("cargo:rerun-if-changed=src/exec/variadic.c");
    println!("cargo:rerun-if-changed=exports.map");

    // rustc exports only Rust's symbols from a cdylib, so the linker is told to keep the C
    // functions (they are referenced by nothing) and to export them.
    for function in VARIADIC {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--undefined={function}");
    }
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={manifest_dir}/exports.map");
}
