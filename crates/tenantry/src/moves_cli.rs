//! `tenantry move …` and `tenantry profile …`: tenant moves over the server's API.

use crate::cli::{client, output, s, Remote};
use crate::table;
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum ProfileCmd {
    /// Store credentials (the password is read from a file, never from the command line).
    Create {
        #[arg(long)]
        name: String,
        /// imap, webdav or graph.
        #[arg(long)]
        kind: String,
        /// imap and webdav: the login.
        #[arg(long, required_unless_present = "tenant_id")]
        username: Option<String>,
        /// imap and webdav: a file holding the password.
        #[arg(long, required_unless_present = "tenant_id")]
        password_file: Option<PathBuf>,
        /// graph: the directory (tenant) id.
        #[arg(long, requires = "client_id")]
        tenant_id: Option<String>,
        /// graph: the app registration's application (client) id.
        #[arg(long)]
        client_id: Option<String>,
        /// graph: a file holding the client secret.
        #[arg(long, conflicts_with = "client_certificate")]
        client_secret_file: Option<PathBuf>,
        /// graph: instead of a secret, a PEM file holding the app's certificate and its private
        /// key (sent to the server once, stored sealed, never shown again).
        #[arg(long, value_name = "FILE")]
        client_certificate: Option<PathBuf>,
        /// graph: the token authority (default https://login.microsoftonline.com).
        #[arg(long)]
        authority: Option<String>,
        /// graph: where Graph is (default https://graph.microsoft.com).
        #[arg(long)]
        graph_url: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace a profile's credential (read from files): an imap or webdav profile's username
    /// and password, a graph profile's client secret or certificate — e.g. when a secret
    /// expires mid-move. Running steps use it from their next attempt.
    Update {
        #[arg(long)]
        name: String,
        /// imap and webdav: the login.
        #[arg(long, requires = "password_file")]
        username: Option<String>,
        /// imap and webdav: a file holding the password.
        #[arg(long, requires = "username")]
        password_file: Option<PathBuf>,
        /// graph: a file holding the new client secret.
        #[arg(long, conflicts_with_all = ["client_certificate", "username"])]
        client_secret_file: Option<PathBuf>,
        /// graph: a PEM file holding the app's certificate and its private key.
        #[arg(long, value_name = "FILE", conflicts_with = "username")]
        client_certificate: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[command(flatten)]
        remote: Remote,
    },
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum MoveCmd {
    /// Describe a move: tenants, path, users, mail servers, libraries.
    Create {
        /// The source tenant, kept by this server.
        #[arg(
            long,
            required_unless_present = "source_graph",
            conflicts_with = "source_graph"
        )]
        source: Option<String>,
        #[arg(
            long,
            required_unless_present = "target_graph",
            conflicts_with = "target_graph"
        )]
        target: Option<String>,
        /// The source tenant reached through Microsoft Graph: a profile of kind graph.
        #[arg(long)]
        source_graph: Option<String>,
        #[arg(long)]
        target_graph: Option<String>,
        /// retire-source (cancel the source's subscriptions) or keep-source (reduce them).
        #[arg(long)]
        path: String,
        /// CSV of `sourceUpn,targetUpn` rows (`,` or `;`, optional header, UTF-8 with or without BOM).
        #[arg(long)]
        users: Option<PathBuf>,
        /// Move every user of a domain: `fabrikam.com=contoso.com`.
        #[arg(long)]
        domain_rewrite: Option<String>,
        /// Never buy seats in the target; missing seats become blockers.
        #[arg(long)]
        no_purchase: bool,
        /// Source mail server: an IMAP server (imaps://host:port) and the profile of its admin
        /// user, or exchange:// and a graph profile (default: the --source-graph profile).
        #[arg(long)]
        source_mail: Option<String>,
        #[arg(long)]
        source_mail_profile: Option<String>,
        #[arg(long)]
        target_mail: Option<String>,
        #[arg(long)]
        target_mail_profile: Option<String>,
        /// A library: `SOURCE=TARGET` (paths, webdav(s)://, sharepoint://{host}/sites/{site}/
        /// {library}/… or onedrive://{userPrincipalName}/…); repeatable.
        /// `onedrive://{user}/=onedrive://{user}/PATH` moves each moving user's OneDrive
        /// (source UPN to target UPN, after the domain rewrite), one step per user.
        #[arg(long = "library")]
        libraries: Vec<String>,
        /// Profiles for the libraries: `SOURCE_PROFILE=TARGET_PROFILE` (either may be empty; a
        /// SharePoint/OneDrive side takes the side's --source-graph/--target-graph profile).
        #[arg(long)]
        library_profiles: Option<String>,
        #[command(flatten)]
        dav: DavServerArgs,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Compute the plan now: seats, purchases, the source's cancellation or reduction, costs,
    /// findings and steps. Exits 3 when the plan has blockers.
    Plan {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run (or resume) the move; with --wait, follow it to the end.
    Run {
        id: String,
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Where a move is: steps done, and a progress bar per running step (items and bytes done
    /// of the total, the rate, the estimated end).
    Status {
        id: String,
        /// Follow the move until it stops: redrawn in place on a terminal, plain lines when
        /// the output is a file or a pipe. Exits 0 once the move completed, 1 if it stopped
        /// otherwise.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Record that an administrator did what a waiting step asks (bought the seats, changed
    /// the source subscription): the step finishes with who confirmed it.
    Confirm {
        id: String,
        /// The step's key, as `move status` shows it.
        step: String,
        #[command(flatten)]
        remote: Remote,
    },
    Pause {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    Cancel {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    Report {
        id: String,
        /// CSV instead of JSON.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

/// A secret from a file, without the line end an editor adds.
fn read_secret(file: &PathBuf) -> anyhow::Result<String> {
    read_text(file).map(|t| t.trim_end_matches(['\r', '\n']).to_string())
}

/// A file as it is (a PEM goes whole: the server checks it and names what is wrong).
fn read_text(file: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

pub async fn run_profile(cmd: ProfileCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ProfileCmd::Create {
            name,
            kind,
            username,
            password_file,
            tenant_id,
            client_id,
            client_secret_file,
            client_certificate,
            authority,
            graph_url,
            remote,
        } => {
            let read = |file: &PathBuf| read_secret(file);
            let body = match (&tenant_id, &password_file) {
                (Some(tenant), _) => {
                    let (field, value) = match (&client_secret_file, &client_certificate) {
                        (Some(file), None) => ("clientSecret", read(file)?),
                        // The PEM goes as it is: the server checks it and names what is wrong.
                        (None, Some(file)) => ("clientCertificate", read_text(file)?),
                        _ => bail!("a graph profile needs --client-secret-file or --client-certificate"),
                    };
                    let mut body = json!({"name": name, "kind": kind, "tenantId": tenant, "clientId": client_id,
                        "authority": authority, "graphUrl": graph_url});
                    body[field] = json!(value);
                    body
                }
                (None, Some(file)) => {
                    json!({"name": name, "kind": kind, "username": username, "password": read(file)?})
                }
                (None, None) => bail!("give --username and --password-file, or for a graph profile --tenant-id, --client-id and --client-secret-file or --client-certificate"),
            };
            let p = client(&remote)?
                .post("/v1/connectionProfiles", body)
                .await?;
            output(
                &remote,
                &p,
                &["NAME", "KIND", "USERNAME"],
                &["name", "kind", "username"],
            );
        }
        ProfileCmd::Update {
            name,
            username,
            password_file,
            client_secret_file,
            client_certificate,
            remote,
        } => {
            let body = match (&password_file, &client_secret_file, &client_certificate) {
                (Some(file), None, None) => {
                    json!({"username": username, "password": read_secret(file)?})
                }
                (None, Some(file), None) => json!({"clientSecret": read_secret(file)?}),
                (None, None, Some(file)) => json!({"clientCertificate": read_text(file)?}),
                _ => bail!("give --username and --password-file, or --client-secret-file, or --client-certificate"),
            };
            let path = format!(
                "/v1/connectionProfiles/{}",
                tenantry_api::routes::urlencode(&name)
            );
            let p = client(&remote)?.put(&path, body).await?;
            output(
                &remote,
                &p,
                &["NAME", "KIND", "USERNAME"],
                &["name", "kind", "username"],
            );
        }
        ProfileCmd::List { remote } => {
            let list = client(&remote)?.get("/v1/connectionProfiles").await?;
            output(
                &remote,
                &list["value"],
                &["NAME", "KIND", "USERNAME", "CREATED"],
                &["name", "kind", "username", "createdDateTime"],
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The CalDAV and CardDAV servers of `move create`: each a URL and the `webdav` profile of its
/// service login, as the mail servers are given.
#[derive(Args, Debug)]
pub struct DavServerArgs {
    /// Source CalDAV server (caldavs://host[:port]/[context/]): with --target-caldav, every
    /// moving user's calendars and task lists move, home to home.
    #[arg(long, requires = "source_caldav_profile")]
    source_caldav: Option<String>,
    #[arg(long)]
    source_caldav_profile: Option<String>,
    #[arg(long, requires = "target_caldav_profile")]
    target_caldav: Option<String>,
    #[arg(long)]
    target_caldav_profile: Option<String>,
    /// Source CardDAV server (carddavs://host[:port]/[context/]): with --target-carddav,
    /// every moving user's address books move.
    #[arg(long, requires = "source_carddav_profile")]
    source_carddav: Option<String>,
    #[arg(long)]
    source_carddav_profile: Option<String>,
    #[arg(long, requires = "target_carddav_profile")]
    target_carddav: Option<String>,
    #[arg(long)]
    target_carddav_profile: Option<String>,
}

impl DavServerArgs {
    /// The request's fields for the servers given.
    fn fields(self) -> Vec<(String, Value)> {
        [
            (
                "sourceCaldav",
                self.source_caldav,
                self.source_caldav_profile,
            ),
            (
                "targetCaldav",
                self.target_caldav,
                self.target_caldav_profile,
            ),
            (
                "sourceCarddav",
                self.source_carddav,
                self.source_carddav_profile,
            ),
            (
                "targetCarddav",
                self.target_carddav,
                self.target_carddav_profile,
            ),
        ]
        .into_iter()
        .filter_map(|(field, url, profile)| {
            Some((field.to_string(), json!({"url": url?, "profile": profile})))
        })
        .collect()
    }
}

fn money(cents: &Value) -> String {
    tenantry_app::format::money(cents.as_u64().unwrap_or(0))
}

fn print_plan(plan: &Value) {
    println!(
        "Plan {} ({})",
        s(plan, "fingerprint").chars().take(12).collect::<String>(),
        s(plan, "path")
    );
    println!("\nUsers");
    let users: Vec<Vec<String>> = plan["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|u| {
            let skus: Vec<String> = u["licences"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| s(l, "skuPartNumber"))
                .collect();
            vec![s(u, "sourceUpn"), s(u, "targetUpn"), skus.join(",")]
        })
        .collect();
    table::print(&["SOURCE", "TARGET", "LICENCES"], &users);
    println!("\nTarget licences");
    let lines: Vec<Vec<String>> = plan["licences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let purchase = match s(&l["purchase"], "kind").as_str() {
                "addSeats" => format!(
                    "add seats: {} → {}",
                    s(&l["purchase"], "from"),
                    s(&l["purchase"], "to")
                ),
                "newSubscription" => {
                    format!("new subscription of {}", s(&l["purchase"], "quantity"))
                }
                _ => "none".into(),
            };
            vec![
                s(l, "skuPartNumber"),
                s(l, "seatsNeeded"),
                s(l, "targetFree"),
                s(l, "seatsToBuy"),
                purchase,
                money(&l["chargeCents"]),
            ]
        })
        .collect();
    table::print(
        &["SKU", "NEEDED", "FREE", "TO BUY", "PURCHASE", "CHARGE"],
        &lines,
    );
    println!("\nSource licences");
    let actions: Vec<Vec<String>> = plan["sourceActions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let what = match s(a, "kind").as_str() {
                "cancel" if a["immediate"] == true => {
                    "cancel now (inside the 7-day window)".to_string()
                }
                "cancel" => "cancel: ends with its term (outside the refund window)".to_string(),
                "reduce" => format!(
                    "reduce {} → {} ({} now)",
                    s(a, "from"),
                    s(a, "to"),
                    s(a, "removedNow")
                ),
                _ => "volume licensing: handled in the VLSC".to_string(),
            };
            vec![s(a, "skuPartNumber"), what, money(&a["refundCents"])]
        })
        .collect();
    table::print(&["SKU", "ACTION", "REFUND"], &actions);
    println!("\nOverlap (both tenants pay)");
    let costs: Vec<Vec<String>> = plan["costs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            vec![
                s(c, "skuPartNumber"),
                s(c, "seatsMoved"),
                money(&c["overlapCents"]),
            ]
        })
        .collect();
    table::print(&["SKU", "SEATS", "SOURCE COST UNTIL IT ENDS"], &costs);
    println!("\nFindings");
    let findings: Vec<Vec<String>> = plan["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| vec![s(f, "severity"), s(f, "code"), s(f, "message")])
        .collect();
    table::print(&["SEVERITY", "CODE", "MESSAGE"], &findings);
    println!("\nSteps");
    for (i, step) in plan["steps"].as_array().into_iter().flatten().enumerate() {
        let detail = match s(step, "kind").as_str() {
            // A user's data moves from one account to another: show both.
            "migrateMailbox" | "migrateCalendars" | "migrateContacts" => {
                format!("{} → {}", s(step, "sourceUpn"), s(step, "targetUpn"))
            }
            _ => ["skuPartNumber", "targetUpn", "sourceUpn", "source"]
                .iter()
                .map(|k| s(step, k))
                .find(|v| !v.is_empty())
                .unwrap_or_default(),
        };
        println!("{:>3}. {} {}", i + 1, s(step, "kind"), detail);
    }
}

pub async fn run_move(cmd: MoveCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        MoveCmd::Create {
            source,
            target,
            source_graph,
            target_graph,
            path,
            users,
            domain_rewrite,
            no_purchase,
            source_mail,
            source_mail_profile,
            target_mail,
            target_mail_profile,
            libraries,
            library_profiles,
            dav,
            remote,
        } => {
            let users_csv = match users {
                Some(file) => {
                    let bytes = std::fs::read(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    // The server reads the rows; a file that is not text is named here.
                    let text = tenantry_csv::text(&bytes)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                    Some(text.to_string())
                }
                None => None,
            };
            let rewrite = match domain_rewrite {
                Some(rule) => {
                    let Some((from, to)) = rule.split_once('=') else {
                        bail!("--domain-rewrite must look like fabrikam.com=contoso.com")
                    };
                    Some(json!({"from": from, "to": to}))
                }
                None => None,
            };
            let (source_profile, target_profile) =
                match library_profiles.as_deref().map(|p| p.split_once('=')) {
                    Some(Some((a, b))) => (
                        Some(a.to_string()).filter(|x| !x.is_empty()),
                        Some(b.to_string()).filter(|x| !x.is_empty()),
                    ),
                    Some(None) => {
                        bail!("--library-profiles must look like SOURCE_PROFILE=TARGET_PROFILE")
                    }
                    None => (None, None),
                };
            let mut libs = Vec::new();
            for l in libraries {
                let Some((from, to)) = l.split_once('=') else {
                    bail!("--library must look like SOURCE=TARGET")
                };
                libs.push(json!({"source": from, "target": to, "sourceProfile": source_profile, "targetProfile": target_profile}));
            }
            let mail = |url: Option<String>, profile: Option<String>| {
                // No profile: the server takes the side's graph profile for exchange://, and
                // names what is missing otherwise.
                url.map(|u| json!({"url": u, "profile": profile.unwrap_or_default()}))
            };
            let mut body = json!({
                "sourceTenantId": source, "targetTenantId": target, "path": path, "usersCsv": users_csv,
                "sourceGraph": source_graph, "targetGraph": target_graph,
                "domainRewrite": rewrite, "allowPurchase": !no_purchase,
                "sourceMail": mail(source_mail, source_mail_profile), "targetMail": mail(target_mail, target_mail_profile),
                "libraries": libs,
            });
            if let Value::Object(fields) = &mut body {
                fields.extend(dav.fields());
            }
            let m = client(&remote)?.post("/v1/moves", body).await?;
            output(&remote, &m, &["ID", "STATE"], &["id", "state"]);
        }
        MoveCmd::List { remote } => {
            let all = client(&remote)?.get_all("/v1/moves").await?;
            output(
                &remote,
                &Value::Array(all),
                &["ID", "STATE", "CREATED"],
                &["id", "state", "createdDateTime"],
            );
        }
        MoveCmd::Plan { id, remote } => {
            let plan = client(&remote)?
                .get(&format!("/v1/moves/{id}/plan"))
                .await?;
            if remote.json {
                println!("{}", serde_json::to_string_pretty(&plan)?);
            } else {
                print_plan(&plan);
            }
            if plan["runnable"] != true {
                eprintln!("\nThe plan has blockers: fix them, then plan again.");
                return Ok(ExitCode::from(3));
            }
        }
        MoveCmd::Run { id, wait, remote } => {
            let c = client(&remote)?;
            let m = c.post(&format!("/v1/moves/{id}/run"), json!({})).await?;
            if !remote.json {
                println!("Move {id} is {}.", s(&m, "state"));
            }
            if wait {
                let mut last = String::new();
                loop {
                    let m = c.get(&format!("/v1/moves/{id}")).await?;
                    let progress = &m["progress"];
                    let line = format!(
                        "{}: {}/{} steps done{}",
                        s(&m, "state"),
                        s(progress, "done"),
                        s(progress, "steps"),
                        running_keys(progress)
                    );
                    if line != last && !remote.json {
                        println!("{line}");
                        last = line;
                    }
                    match s(&m, "state").as_str() {
                        "Completed" => break,
                        "Failed" | "Cancelled" | "Paused" => {
                            if let Some(e) =
                                progress["current"].get("error").and_then(Value::as_str)
                            {
                                eprintln!("last error: {e}");
                            }
                            return Ok(ExitCode::FAILURE);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(500)).await,
                    }
                }
            }
        }
        MoveCmd::Status { id, watch, remote } => {
            let c = client(&remote)?;
            let path = format!("/v1/moves/{id}");
            if !watch {
                let m = c.get(&path).await?;
                if remote.json {
                    println!("{}", serde_json::to_string_pretty(&m)?);
                } else {
                    println!("{}", status_lines(&m, unix_now()).join("\n"));
                }
                return Ok(ExitCode::SUCCESS);
            }
            return watch_status(&c, &path, remote.json).await;
        }
        MoveCmd::Confirm { id, step, remote } => {
            let c = client(&remote)?
                .post(
                    &format!(
                        "/v1/moves/{id}/steps/{}/confirm",
                        tenantry_api::routes::urlencode(&step)
                    ),
                    json!({}),
                )
                .await?;
            output(
                &remote,
                &c,
                &["STEP", "CONFIRMED BY"],
                &["key", "confirmedBy"],
            );
        }
        MoveCmd::Pause { id, remote } => {
            let m = client(&remote)?
                .post(&format!("/v1/moves/{id}/pause"), json!({}))
                .await?;
            output(&remote, &m, &["ID", "STATE"], &["id", "state"]);
        }
        MoveCmd::Cancel { id, remote } => {
            let m = client(&remote)?
                .post(&format!("/v1/moves/{id}/cancel"), json!({}))
                .await?;
            output(&remote, &m, &["ID", "STATE"], &["id", "state"]);
        }
        MoveCmd::Report { id, csv, remote } => {
            let c = client(&remote)?;
            let report = c.get(&format!("/v1/moves/{id}/report")).await?;
            if csv {
                print!("{}", tenantry_mover::report::to_csv(&report));
            } else {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Follows a move until it stops: on a terminal the status is redrawn in place; otherwise
/// (a log, a pipe) it is printed again whenever it changes.
async fn watch_status(
    c: &crate::client::Client,
    path: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    use std::io::{IsTerminal, Write};
    let tty = !json && std::io::stdout().is_terminal();
    let (mut drawn, mut last) = (0usize, String::new());
    loop {
        let m = c.get(path).await?;
        let text = if json {
            serde_json::to_string(&m)?
        } else {
            status_lines(&m, unix_now()).join("\n")
        };
        if text != last {
            let mut out = std::io::stdout().lock();
            if tty && drawn > 0 {
                // Up to the first line drawn last time, and clear from there down.
                write!(out, "\x1b[{drawn}A\x1b[J")?;
            }
            writeln!(out, "{text}")?;
            out.flush()?;
            drawn = text.lines().count();
            last = text;
        }
        match s(&m, "state").as_str() {
            "Completed" => return Ok(ExitCode::SUCCESS),
            "Failed" | "Cancelled" | "Paused" => return Ok(ExitCode::FAILURE),
            _ => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A move's status as text: what waits for an administrator, steps done, and each running step
/// with its worker and a progress bar once its engine reported counts.
fn status_lines(m: &Value, now: i64) -> Vec<String> {
    let mut lines = Vec::new();
    // What an administrator must do comes first: the run waits for it.
    for w in m["waitingForAdministrator"]
        .as_array()
        .into_iter()
        .flatten()
    {
        lines.push(format!(
            "WAITING FOR AN ADMINISTRATOR: {}\n  then, unless the run sees it by itself: tenantry move confirm {} {}",
            s(&w["action"], "message"),
            s(m, "id"),
            s(w, "key")
        ));
    }
    lines.push(format!(
        "{} {}: {}/{} steps done",
        s(m, "id"),
        s(m, "state"),
        s(&m["progress"], "done"),
        s(&m["progress"], "steps")
    ));
    for step in m["progress"]["running"].as_array().into_iter().flatten() {
        let key = s(step, "key");
        lines.push(format!(
            "  running {key} on {} since {} (attempt {})",
            s(step, "worker"),
            s(step, "startedDateTime"),
            s(step, "attempts")
        ));
        let progress: Option<tenantry_app::progress::ProgressView> =
            serde_json::from_value(step["progress"].clone()).ok();
        if let Some(progress) = progress {
            lines.push(format!("    {}", progress.line(items_unit(&key), now)));
        }
    }
    lines
}

/// What a step's items are, by the kind its key starts with.
fn items_unit(key: &str) -> &'static str {
    match key.split(':').next() {
        Some("mailbox") => "messages",
        Some("library") => "files",
        Some("calendars") => "events and tasks",
        Some("contacts") => "contacts",
        _ => "items",
    }
}

/// `, now a, b and 3 more`: the steps running at the moment (many run at once).
fn running_keys(progress: &Value) -> String {
    let keys: Vec<&str> = progress["running"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step["key"].as_str())
        .collect();
    match keys.len() {
        0 => String::new(),
        1..=3 => format!(", now {}", keys.join(", ")),
        n => format!(", now {} and {} more", keys[..3].join(", "), n - 3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_step_with_progress_gets_a_bar() {
        let m = json!({
            "id": "m1", "state": "Running",
            "progress": {"steps": 4, "done": 1, "running": [
                {"key": "mailbox:adele@fabrikam.com", "worker": "w1", "startedDateTime": "2026-01-01T00:00:00Z", "attempts": 1,
                 "progress": {"itemsDone": 1204, "itemsTotal": 2300, "bytesDone": 310000000, "bytesTotal": 590000000,
                              "ratePerSecond": 4100000.0, "estimatedEnd": "1970-01-01T00:17:50Z"}},
                {"key": "assign:bob@contoso.com", "worker": "w2", "startedDateTime": "2026-01-01T00:00:00Z", "attempts": 1,
                 "progress": null}
            ]}
        });
        let lines = status_lines(&m, 1000);
        assert_eq!(lines[0], "m1 Running: 1/4 steps done");
        assert!(lines[1].starts_with("  running mailbox:adele@fabrikam.com on w1"));
        assert_eq!(
            lines[2],
            "    [##########..........]  52% 1,204/2,300 messages 310 MB/590 MB 4.1 MB/s ETA 1m10s"
        );
        assert!(lines[3].starts_with("  running assign:bob@contoso.com"));
        assert_eq!(lines.len(), 4, "no bar without progress: {lines:?}");
    }
}
