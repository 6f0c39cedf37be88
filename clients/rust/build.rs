//! Compiles `../../proto` (the server's API) with protox (pure Rust, no system
//! `protoc`) into prost messages and tonic clients; no server code.

use std::{fs, io, path::Path, path::PathBuf};

const PROTO_DIR: &str = "../../proto";

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            // Directories are watched too, so a new file triggers a rebuild.
            println!("cargo:rerun-if-changed={}", path.display());
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            println!("cargo:rerun-if-changed={}", path.display());
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={PROTO_DIR}");
    let mut protos = Vec::new();
    collect_protos(Path::new(PROTO_DIR), &mut protos)?;

    let fds = protox::compile(&protos, [PROTO_DIR])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .emit_rerun_if_changed(false)
        .compile_fds(fds)?;
    Ok(())
}
