//! Generates the tonic/prost code of Pravega's controller API (`proto/Controller.proto`,
//! vendored from pravega-client-rust: see `proto/README.md`) with a vendored `protoc`, as
//! `nadi-proto` does for Nadi's own packages. Server stubs get default bodies
//! (`generate_default_stubs`): an RPC the front end does not implement answers UNIMPLEMENTED,
//! which the Pravega client treats as a final error rather than retrying.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let proto = "proto/Controller.proto";
    tonic_prost_build::configure().generate_default_stubs(true).compile_protos(&[proto], &["proto"])?;
    println!("cargo:rerun-if-changed={proto}");
    Ok(())
}
