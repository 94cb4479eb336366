//! Owner-only files and folders: the ledger database and the engines' state stores hold
//! tenants, users, mailbox and library names, and pre-authenticated upload links, so nobody but
//! their owner may read them. SQLite gives its `-wal` and `-shm` files the mode of the database.

use std::path::Path;

/// Creates `dir` and its missing parents, owner-only (0700) where they are new.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` owner-only (0600) if it does not exist yet; an existing file is left as is.
pub fn create_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_files_and_folders_are_owner_only() {
        let tmp = std::env::temp_dir().join(format!("tenantry-private-fs-{}", std::process::id()));
        let dir = tmp.join("a/b");
        create_dir(&dir).unwrap();
        let file = dir.join("state.sqlite");
        create_file(&file).unwrap();
        create_file(&file).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
