//! Test support for the files engine: the throwaway Apache mod_dav and wsgidav servers, fixture
//! trees and tree fingerprints come from `tenantry-testkit`; the helpers that run this crate's
//! `tenantry-files` binary stay here.
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use tenantry_testkit::apache::Apache;
pub use tenantry_testkit::net::free_port;
pub use tenantry_testkit::tree::{
    assert_same_tree, fingerprint, sample_tree, set_mtime, write_file,
};
pub use tenantry_testkit::wsgidav::{WsgiDav, WsgiMtime};
pub use tenantry_testkit::PASSWORD;

/// The `tenantry-files` binary, as cargo built it for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tenantry-files"))
}

/// Runs `tenantry-files` with both passwords in the environment.
pub fn cli(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("TENANTRY_SOURCE_PASSWORD", PASSWORD)
        .env("TENANTRY_TARGET_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

/// Runs `migrate --json` and returns the exit code and the report.
pub fn migrate(
    source: &str,
    target: &str,
    state: &Path,
    extra: &[&str],
) -> (i32, serde_json::Value) {
    let st = state.to_str().unwrap();
    let mut args = vec![
        "migrate",
        "--source",
        source,
        "--target",
        target,
        "--state-dir",
        st,
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = cli(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(PASSWORD), "password leaked: {stderr}");
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); stdout: {} stderr: {stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}

/// Runs `verify --json` and returns the exit code and the report.
pub fn verify(source: &str, target: &str) -> (i32, serde_json::Value) {
    let out = cli(&["verify", "--source", source, "--target", target, "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), v)
}
