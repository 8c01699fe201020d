//! Generates the weir.v1 types and tonic services from `weir/v1/*.proto` (needs `protoc`).
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "weir/v1/topics.proto",
        "weir/v1/log.proto",
        "weir/v1/groups.proto",
        "weir/v1/plugins.proto",
        "weir/v1/pipelines.proto",
        "weir/v1/cluster.proto",
        "weir/v1/security.proto",
        "weir/v1/admin.proto",
    ];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    tonic_prost_build::configure()
        // `bytes` fields become `bytes::Bytes`: batches are sliced out of the request buffer
        // without a copy and handed to storage and consumers as they are.
        .bytes(".")
        .compile_protos(&protos, &["."])?;
    Ok(())
}
