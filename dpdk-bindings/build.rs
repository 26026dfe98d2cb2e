//! Build script for `tack-dpdk`: finds the system DPDK through pkg-config,
//! compiles the C shim with DPDK's own compiler flags, generates bindings with
//! bindgen and tells rustc how to link (shared by default, whole-archive static
//! with the `static` feature).

use std::env;
use std::path::PathBuf;
use std::process::Command;

const MIN_VERSION: &str = "22.11";

fn pkg_config(args: &[&str]) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libdpdk")
        .output()
        .unwrap_or_else(|e| {
            panic!("tack-dpdk: cannot run pkg-config ({e}); install pkg-config and libdpdk-dev")
        });
    if !out.status.success() {
        panic!(
            "tack-dpdk: `pkg-config {} libdpdk` failed: {}\ninstall DPDK >= {MIN_VERSION} (Debian: apt-get install libdpdk-dev)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout)
        .expect("pkg-config output is UTF-8")
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-changed=csrc/shim.c");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    println!("cargo:rerun-if-changed=csrc/wrapper.h");
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

    let lib = pkg_config::Config::new()
        .atleast_version(MIN_VERSION)
        .cargo_metadata(false)
        .probe("libdpdk")
        .unwrap_or_else(|e| {
            panic!("tack-dpdk: DPDK >= {MIN_VERSION} not found via pkg-config: {e}")
        });
    println!("cargo:version={}", lib.version);

    // The raw flags matter: DPDK's headers need its -march and `-include rte_config.h`.
    let cflags = pkg_config(&["--cflags"]);

    let mut build = cc::Build::new();
    build
        .file("csrc/shim.c")
        .include("csrc")
        .warnings(false)
        .opt_level(3);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("tack_dpdk_shim");

    let statik = env::var_os("CARGO_FEATURE_STATIC").is_some();
    if statik {
        // `pkg-config --static` lists every DPDK library and PMD between
        // -Wl,--whole-archive and -Wl,--no-whole-archive (so the PMDs' constructors
        // are kept), then their system dependencies. Turn that into link-lib
        // directives that also reach the binaries of dependent crates.
        let libdir = pkg_config(&["--variable=libdir"]).join("");
        println!("cargo:rustc-link-search=native={libdir}");
        let mut whole = false;
        let mut seen = std::collections::HashSet::new();
        for f in pkg_config(&["--static", "--libs"]) {
            match f.as_str() {
                "-Wl,--whole-archive" => whole = true,
                "-Wl,--no-whole-archive" => whole = false,
                "-pthread" => println!("cargo:rustc-link-lib=dylib=pthread"),
                _ => {
                    if let Some(dir) = f.strip_prefix("-L") {
                        println!("cargo:rustc-link-search=native={dir}");
                    } else if let Some(file) = f.strip_prefix("-l:") {
                        let name = file.trim_start_matches("lib").trim_end_matches(".a");
                        if !seen.insert(name.to_string()) {
                            continue;
                        }
                        let modifiers = if whole {
                            ":-bundle,+whole-archive"
                        } else {
                            ":-bundle"
                        };
                        println!("cargo:rustc-link-lib=static{modifiers}={name}");
                    } else if let Some(name) = f.strip_prefix("-l") {
                        if !seen.insert(name.to_string()) {
                            continue;
                        }
                        if name.starts_with("rte_") {
                            println!("cargo:rustc-link-lib=static:-bundle={name}");
                        } else {
                            println!("cargo:rustc-link-lib=dylib={name}");
                        }
                    } else if f.starts_with("-Wl,") {
                        println!("cargo:rustc-link-arg={f}");
                    }
                }
            }
        }
    } else {
        // Shared: EAL loads the PMDs itself from its plugin directory.
        for f in pkg_config(&["--libs"]) {
            if let Some(dir) = f.strip_prefix("-L") {
                println!("cargo:rustc-link-search=native={dir}");
            } else if let Some(name) = f.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={name}");
            }
        }
    }

    let mut bindings = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_arg("-Icsrc")
        .allowlist_function("rte_.*")
        .allowlist_function("tack_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_type("FILE")
        .blocklist_function("rte_.*_trace.*")
        .opaque_type("rte_mempool_objhdr")
        .derive_default(true)
        .derive_debug(false)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in &cflags {
        bindings = bindings.clang_arg(f);
    }
    let bindings = bindings
        .generate()
        .expect("tack-dpdk: bindgen failed on the DPDK headers");
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("tack-dpdk: cannot write bindings.rs");
}
