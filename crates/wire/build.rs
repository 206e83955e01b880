//! Compiles proto/starling/cluster/v1/envelope.proto with prost. `protoc` comes from the
//! `protoc-bin-vendored` crate unless `PROTOC` names one, so building needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time, not with `env!`: a build script compiled in one checkout is reused by
    // cargo for another that shares the target directory (CI clones), and must not read the
    // first checkout's schema.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
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
