//! Compiles proto/starling/cluster/v1/envelope.proto with prost. `protoc` comes from the
//! `protoc-bin-vendored` crate unless `PROTOC` names one, so building needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let schema = root.join("starling/cluster/v1/envelope.proto");
    println!("cargo:rerun-if-changed={}", schema.display());
    println!("cargo:rerun-if-env-changed=PROTOC");
    let mut config = prost_build::Config::new();
    if std::env::var_os("PROTOC").is_none() {
        config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    }
    // Stanza bytes are shared, not copied, when a record is decoded.
    config.bytes(["."]);
    config.compile_protos(&[schema], &[root])?;
    Ok(())
}
