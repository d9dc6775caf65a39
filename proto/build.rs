//! Generates the tonic/prost code for the versioned gRPC packages with a vendored `protoc`, so
//! building Nadi never needs a system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let protos = [
        "proto/nadi/controller/v1/controller.proto",
        "proto/nadi/controller/v1/transactions.proto",
        "proto/nadi/controller/v1/reader_groups.proto",
        "proto/nadi/segment/v1/segment.proto",
        "proto/nadi/raft/v1/raft.proto",
        "proto/nadi/replica/v1/replica.proto",
    ];
    tonic_prost_build::configure()
        // Payloads and other byte fields are `bytes::Bytes`: zero-copy from the wire to the log.
        .bytes(".")
        .compile_protos(&protos, &["proto"])?;
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    Ok(())
}
