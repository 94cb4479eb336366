//! `sharepoint://{host}/sites/{site}/{library}/{path}` and `onedrive://{userPrincipalName}/{path}`.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use tenantry_graph::GraphConfig;

use super::args::{GraphArgs, Side};
use super::store::GraphStore;
use super::{DriveRef, GraphEndpoint};
use crate::endpoint::Endpoint;

pub fn is_graph(loc: &str) -> bool {
    loc.starts_with("sharepoint://") || loc.starts_with("onedrive://")
}

/// A parsed location: the drive and the folder inside it (decoded).
#[derive(Debug, PartialEq, Eq)]
pub struct GraphLocation {
    pub drive: DriveRef,
    pub folder: String,
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

pub fn parse(loc: &str) -> anyhow::Result<GraphLocation> {
    if loc.contains('@') && loc.starts_with("sharepoint://")
        || loc.contains('?')
        || loc.contains('#')
    {
        bail!("a sharepoint:// location has no user, query or fragment: sharepoint://{{host}}/sites/{{site}}/{{library}}/{{path}}");
    }
    if let Some(rest) = loc.strip_prefix("sharepoint://") {
        let segs: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        match segs.as_slice() {
            [host, kind, site, library, path @ ..] if kind == "sites" || kind == "teams" => {
                Ok(GraphLocation {
                    drive: DriveRef::Library {
                        host: host.to_lowercase(),
                        site_path: format!("{kind}/{site}"),
                        library: library.clone(),
                    },
                    folder: path.join("/"),
                })
            }
            _ => bail!("expected sharepoint://{{host}}/sites/{{site}}/{{library}}[/{{path}}], e.g. sharepoint://contoso.sharepoint.com/sites/Finance/Shared%20Documents/2024"),
        }
    } else if let Some(rest) = loc.strip_prefix("onedrive://") {
        let segs: Vec<String> = rest
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode)
            .collect();
        match segs.as_slice() {
            [upn, path @ ..] if upn.contains('@') => Ok(GraphLocation {
                drive: DriveRef::User { upn: upn.clone() },
                folder: path.join("/"),
            }),
            _ => bail!("expected onedrive://{{userPrincipalName}}[/{{path}}], e.g. onedrive://adele@contoso.com/Projects"),
        }
    } else {
        bail!("not a sharepoint:// or onedrive:// location")
    }
}

pub fn open(
    loc: &str,
    side: Side,
    args: &GraphArgs,
    http: &reqwest::Client,
    state: Option<&Path>,
) -> anyhow::Result<Arc<dyn Endpoint>> {
    Ok(Arc::new(open_endpoint(
        loc, side, args, http, state, false,
    )?))
}

/// For `verify`: lists the library as it is now (no saved delta), reading the state store only
/// for the files the service rewrote after upload.
pub fn open_for_verify(
    loc: &str,
    side: Side,
    args: &GraphArgs,
    http: &reqwest::Client,
    state: Option<&Path>,
) -> anyhow::Result<Arc<dyn Endpoint>> {
    Ok(Arc::new(
        open_endpoint(loc, side, args, http, state, true)?.fresh_listing(),
    ))
}

fn open_endpoint(
    loc: &str,
    side: Side,
    args: &GraphArgs,
    http: &reqwest::Client,
    state: Option<&Path>,
    read_only: bool,
) -> anyhow::Result<GraphEndpoint> {
    let parsed = parse(loc)?;
    let creds = args.app.side(side);
    let which = side.option_prefix();
    let Some(tenant) = creds.tenant_id else {
        bail!("{loc}: give --tenant-id (or {which}tenant-id)");
    };
    let Some(client_id) = creds.client_id else {
        bail!("{loc}: give --client-id (or {which}client-id)");
    };
    let credential = creds.credential().with_context(|| loc.to_string())?;
    let mut cfg = GraphConfig::from_env(tenant, client_id, credential);
    cfg.max_in_flight = args.graph_max_in_flight.max(1);
    // One client per app in this process: source and target of the same tenant share its
    // token (and, by app, its throttling budget).
    let client = tenantry_graph::shared_client(cfg, "files", || {
        Ok::<_, std::convert::Infallible>(http.clone())
    })
    .unwrap_or_else(|never| match never {});
    // Read-only for `verify`: opened for writing, a store from an older version would be
    // upgraded, and the upgrade drops its delta link (the next migration would list the
    // library in full once more).
    let store = state
        .map(|p| {
            if read_only {
                GraphStore::open_read_only(p, loc)
            } else {
                GraphStore::open(p, loc)
            }
        })
        .transpose()
        .context("opening the state store")?;
    let ep = GraphEndpoint::new(
        client,
        loc.to_string(),
        parsed.drive,
        parsed.folder,
        store,
        args.graph_small_files,
    );
    Ok(match side {
        Side::Source => ep.must_exist(),
        Side::Target => ep,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharepoint_and_onedrive_locations() {
        let l =
            parse("sharepoint://Contoso.sharepoint.com/sites/Finance/Shared%20Documents/2024/Q1")
                .unwrap();
        assert_eq!(
            l.drive,
            DriveRef::Library {
                host: "contoso.sharepoint.com".into(),
                site_path: "sites/Finance".into(),
                library: "Shared Documents".into()
            }
        );
        assert_eq!(l.folder, "2024/Q1");
        let l = parse("onedrive://adele@contoso.com/").unwrap();
        assert_eq!(
            l.drive,
            DriveRef::User {
                upn: "adele@contoso.com".into()
            }
        );
        assert_eq!(l.folder, "");
        assert!(parse("sharepoint://contoso.sharepoint.com/Finance").is_err());
        assert!(parse("onedrive://nobody/x").is_err());
    }
}
