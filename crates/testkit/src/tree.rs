//! Fixture trees on disk and a fingerprint of a tree (paths, SHA-256 of contents, mtimes) to
//! compare the two sides of a migration.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Sets the modification time of `p` to `secs` after the epoch.
pub fn set_mtime(p: &Path, secs: u64) {
    std::fs::File::options()
        .write(true)
        .open(p)
        .or_else(|_| std::fs::File::open(p))
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::from_secs(secs))
        .unwrap();
}

/// Writes `root/rel` (making its folders) with `content` and modification time `mtime`.
pub fn write_file(root: &Path, rel: &str, content: &[u8], mtime: u64) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, content).unwrap();
    set_mtime(&p, mtime);
}

/// A small tree with what tends to break: non-ASCII and spaced names, characters that need
/// percent-encoding, an empty folder, an empty file, binary content, deep nesting, old times.
pub fn sample_tree(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let bin: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write_file(
        root,
        "Verträge 2019/Angebot Müller & Söhne.docx",
        b"contract v1",
        1_262_304_000,
    );
    write_file(
        root,
        "Verträge 2019/résumé #2 (final) 100%.pdf",
        &bin,
        1_300_000_000,
    );
    write_file(
        root,
        "日本語/報告書.xlsx",
        b"\x00\x01binary\xff",
        1_400_000_000,
    );
    write_file(root, "a/b/c/d/deep file+plus.txt", b"deep", 1_500_000_000);
    write_file(root, "empty.txt", b"", 1_600_000_000);
    write_file(root, "top level.txt", b"hello world", 1_650_000_000);
    std::fs::create_dir_all(root.join("Empty Folder/also empty")).unwrap();
}

/// One entry of a [`fingerprint`]: folders have an empty `sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub is_dir: bool,
    pub sha256: String,
    pub mtime: u64,
}

/// Every folder and file below `root` (temporary upload names included, so they show up).
pub fn fingerprint(root: &Path) -> BTreeMap<String, Node> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Node>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let md = e.metadata().unwrap();
            let mtime = md
                .modified()
                .unwrap()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            if md.is_dir() {
                out.insert(
                    rel,
                    Node {
                        is_dir: true,
                        sha256: String::new(),
                        mtime,
                    },
                );
                walk(root, &p, out);
            } else {
                let data = std::fs::read(&p).unwrap();
                out.insert(
                    rel,
                    Node {
                        is_dir: false,
                        sha256: hex::encode(Sha256::digest(&data)),
                        mtime,
                    },
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Asserts both trees hold the same folders and files with the same content; with
/// `mtimes`, files also have the same modification time (to the second).
pub fn assert_same_tree(a: &Path, b: &Path, mtimes: bool) {
    let (fa, fb) = (fingerprint(a), fingerprint(b));
    let ka: Vec<_> = fa.keys().collect();
    let kb: Vec<_> = fb.keys().collect();
    assert_eq!(ka, kb, "same paths on both sides");
    for (k, na) in &fa {
        let nb = &fb[k];
        assert_eq!(na.is_dir, nb.is_dir, "{k}");
        assert_eq!(na.sha256, nb.sha256, "content of {k}");
        if mtimes && !na.is_dir {
            assert_eq!(na.mtime, nb.mtime, "mtime of {k}");
        }
    }
}
