//! Build-time facts: the git commit and the build date `cutover --version` and
//! `cutover_build_info` report, and the remote API's protocol buffers
//! (proto/cutover/v1/cutover.proto) compiled into the gRPC service and messages of
//! `grpc::pb`, with the descriptor set reflection serves (needs `protoc`, Debian:
//! protobuf-compiler, as etcd-client does).
//!
//! The commit is `git rev-parse --short=12 HEAD` when the source is a git checkout, else
//! the environment's `CUTOVER_GIT_COMMIT` (a package built from a tarball), else
//! `unknown`. The date is `SOURCE_DATE_EPOCH` when set (reproducible builds), else the
//! time of the build, as `YYYY-MM-DD` in UTC.

use std::process::Command;

// The build reads dates one way only.
#[allow(dead_code)]
#[path = "src/cli/civil.rs"]
mod civil;

fn main() {
    println!("cargo:rerun-if-changed=src/cli/civil.rs");
    version_facts();
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

/// Sets `CUTOVER_GIT_COMMIT` and `CUTOVER_BUILD_DATE` for the crate.
fn version_facts() {
    println!("cargo:rerun-if-env-changed=CUTOVER_GIT_COMMIT");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let commit = git(&["rev-parse", "--short=12", "HEAD"])
        .or_else(|| std::env::var("CUTOVER_GIT_COMMIT").ok())
        .filter(|c| !c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| "unknown".into());
    // A new commit or checkout moves HEAD's reflog: the commit is read again.
    if let Some(log) = git(&[
        "rev-parse",
        "--path-format=absolute",
        "--git-path",
        "logs/HEAD",
    ]) {
        println!("cargo:rerun-if-changed={log}");
    }
    let epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    println!("cargo:rustc-env=CUTOVER_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=CUTOVER_BUILD_DATE={}", date(epoch));
}

/// What git prints for `args` in this crate's directory, when it runs and succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}

/// `YYYY-MM-DD` (UTC) of a Unix time in seconds.
fn date(epoch: i64) -> String {
    let (year, month, day) = civil::from_days(epoch.div_euclid(86_400));
    format!("{year:04}-{month:02}-{day:02}")
}
