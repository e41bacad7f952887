//! Compiles the agent channel's .proto with protox (pure Rust; no protoc on build machines) when
//! the `agent` feature is on.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    if std::env::var_os("CARGO_FEATURE_AGENT").is_none() {
        return Ok(());
    }
    let descriptors = protox::compile(["ward/agent/v1/agent.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .codec_path("crate::agent_codec::LeanCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
