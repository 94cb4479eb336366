//! What every process working on a tenantry database sets up alike (`serve`, `worker`): its
//! local paths, the connection-profile key, the move runner and its name, logging, and the
//! signals that stop it.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tenantry_mover::gather::Mover;
use tenantry_mover::secrets::Sealer;
use tenantry_store::Store;

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// The connection-profile key from `TENANTRY_SECRET_KEY`, read once and removed from the
/// environment (so that it does not reach child processes); on a shared database, without it
/// the key file must already exist (every process must seal with the same key).
pub fn take_secret_key(local: &LocalPaths) -> anyhow::Result<Option<String>> {
    let env_key = std::env::var("TENANTRY_SECRET_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    std::env::remove_var("TENANTRY_SECRET_KEY");
    if local.shared_database && env_key.is_none() && !local.key_file.exists() {
        anyhow::bail!(
            "the secret key file {} does not exist: with PostgreSQL every process must use the same key, \
             so it is not created here; copy the key of the first server, or create one with \
             `openssl rand -hex 32 > FILE` (mode 600)",
            local.key_file.display()
        );
    }
    Ok(env_key)
}

/// What the move runner needs: the store, the engines, the key, where engine state lives.
pub fn mover(
    store: Arc<dyn Store>,
    env_key: Option<&str>,
    local: &LocalPaths,
) -> anyhow::Result<Arc<Mover>> {
    let sealer = Sealer::load(env_key, &local.key_file).map_err(anyhow::Error::msg)?;
    Ok(Arc::new(Mover {
        store,
        engines: crate::engines::real(),
        sealer,
        data_dir: local.data_dir.clone(),
    }))
}

/// A worker name unique across machines and restarts: host, process id, a random suffix. Step
/// records name it (`claimedBy`), so an operator can tell which process runs what.
pub fn worker_name(role: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{role}-{host}-{}-{}", std::process::id(), &suffix[..6])
}

/// Where this process keeps its local files: the key that seals connection profiles and the
/// engines' resumable state.
pub struct LocalPaths {
    pub key_file: PathBuf,
    pub data_dir: PathBuf,
    /// PostgreSQL: other processes, maybe on other machines, share the database.
    pub shared_database: bool,
}

impl LocalPaths {
    /// SQLite: both default to beside the database file. PostgreSQL has no such place: the
    /// data directory must be named, and the key given (every process sharing the database must
    /// seal and open profiles with the same key).
    pub fn resolve(
        database: &str,
        data_dir: Option<&Path>,
        secret_key_file: Option<&Path>,
    ) -> anyhow::Result<LocalPaths> {
        if tenantry_store::is_postgres(database) {
            let data_dir = data_dir.map(Path::to_path_buf).context(
                "with a PostgreSQL database, pass --data-dir DIR: where this process keeps the \
                 mail and files engines' resumable state",
            )?;
            let has_env_key = std::env::var("TENANTRY_SECRET_KEY").is_ok_and(|k| !k.is_empty());
            let key_file = match (secret_key_file, has_env_key) {
                (Some(file), _) => file.to_path_buf(),
                // Not read: the key comes from the environment.
                (None, true) => data_dir.join("tenantry.key"),
                (None, false) => anyhow::bail!(
                    "with a PostgreSQL database, pass --secret-key-file FILE or set \
                     TENANTRY_SECRET_KEY: every process sharing the database must use the same key"
                ),
            };
            return Ok(LocalPaths {
                key_file,
                data_dir,
                shared_database: true,
            });
        }
        let db_dir = Path::new(database.strip_prefix("sqlite://").unwrap_or(database))
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        Ok(LocalPaths {
            key_file: secret_key_file
                .map(Path::to_path_buf)
                .unwrap_or_else(|| db_dir.join("tenantry.key")),
            data_dir: data_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(|| db_dir.join("tenantry-data")),
            shared_database: false,
        })
    }
}

/// SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
