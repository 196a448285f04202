//! Compiles the remote API's protocol buffers (proto/cutover/v1/cutover.proto) into the
//! gRPC service and messages of `grpc::pb`, and the descriptor set reflection serves.
//! Needs `protoc` (Debian: protobuf-compiler), as etcd-client does.

fn main() {
    #[cfg(feature = "grpc")]
    {
        let out =
            std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        println!("cargo:rerun-if-changed=../proto/cutover/v1/cutover.proto");
        if let Err(e) = tonic_prost_build::configure()
            .file_descriptor_set_path(out.join("cutover_descriptor.bin"))
            .compile_protos(&["../proto/cutover/v1/cutover.proto"], &["../proto"])
        {
            panic!("compiling proto/cutover/v1/cutover.proto: {e}");
        }
    }
}
