//! Command-line surface: `tenantry serve` and the client commands, which speak HTTP to a server.

use crate::client::{Client, Problem};
use crate::serve::{self, ServeArgs};
use crate::table;
use anyhow::{anyhow, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "tenantry",
    version,
    about = "Move organisations between Microsoft 365-style tenants: licence ledger, mailbox and document-library migration."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// URL of the tenantry server.
    #[arg(
        long,
        global = true,
        env = "TENANTRY_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (API and admin center).
    Serve(ServeArgs),
    /// Tenants (operator).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// The SKU catalog.
    #[command(subcommand)]
    Sku(SkuCmd),
    /// Subscriptions: buy, change seats, cancel, reactivate.
    #[command(subcommand)]
    Subscription(SubscriptionCmd),
    /// Users of a tenant.
    #[command(subcommand)]
    User(UserCmd),
    /// Licence assignment and per-SKU counts.
    #[command(subcommand)]
    License(LicenseCmd),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Applications: a client id and secret for the OAuth2 client-credentials grant (/v1.0).
    #[command(subcommand)]
    App(AppCmd),
    /// Mailbox migration, IMAP to IMAP (runs here, not on the server).
    #[command(subcommand)]
    Mail(tenantry_mail::cli::MailCommand),
    /// Document-library migration between WebDAV servers and folders (runs here).
    #[command(subcommand)]
    Files(tenantry_files::cli::FilesCommand),
    /// Calendar and task-list migration between CalDAV servers (runs here).
    #[command(subcommand)]
    Calendars(tenantry_pim::cli::PimCommand),
    /// Address-book migration between CardDAV servers (runs here).
    #[command(subcommand)]
    Contacts(tenantry_pim::cli::PimCommand),
    /// Tenant moves: plan and run a whole move on the server.
    #[command(subcommand)]
    Move(crate::moves_cli::MoveCmd),
    /// Connection profiles: credentials of mail servers and libraries for moves (stored encrypted).
    #[command(subcommand)]
    Profile(crate::moves_cli::ProfileCmd),
}

#[derive(Args, Debug)]
struct TenantArg {
    /// Tenant id (GUID).
    #[arg(long, env = "TENANTRY_TENANT")]
    tenant: String,
}

#[derive(Subcommand, Debug)]
enum TenantCmd {
    Create {
        #[arg(long)]
        name: String,
        /// Initial domain, e.g. contoso.onmicrosoft.com.
        #[arg(long)]
        domain: String,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[command(flatten)]
        remote: Remote,
    },
    Show {
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
enum SkuCmd {
    List {
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
enum SubscriptionCmd {
    /// Buy a subscription.
    Create {
        #[command(flatten)]
        tenant: TenantArg,
        /// skuPartNumber (e.g. ENTERPRISEPACK) or skuId.
        #[arg(long)]
        sku: String,
        #[arg(long)]
        quantity: u32,
        /// direct or partner.
        #[arg(long, default_value = "direct")]
        channel: String,
        /// monthly or perTerm.
        #[arg(long, default_value = "monthly")]
        billing_cycle: String,
        /// monthly, annual or threeYear.
        #[arg(long, default_value = "annual")]
        term: String,
        #[arg(long)]
        trial: bool,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[command(flatten)]
        tenant: TenantArg,
        #[command(flatten)]
        remote: Remote,
    },
    Show {
        #[command(flatten)]
        tenant: TenantArg,
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Set the total number of seats (adds now; removals are refunded only within 7 days).
    SetQuantity {
        #[command(flatten)]
        tenant: TenantArg,
        id: String,
        quantity: u32,
        #[command(flatten)]
        remote: Remote,
    },
    Cancel {
        #[command(flatten)]
        tenant: TenantArg,
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    Reactivate {
        #[command(flatten)]
        tenant: TenantArg,
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Transfer to another tenant: not possible; explains what to do instead.
    Transfer {
        #[command(flatten)]
        tenant: TenantArg,
        id: String,
        /// The tenant you wanted to move the licences to.
        #[arg(long)]
        to: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
enum UserCmd {
    Create {
        #[command(flatten)]
        tenant: TenantArg,
        #[arg(long)]
        upn: String,
        #[arg(long)]
        name: String,
        /// Two-letter country code; needed before licences can be assigned.
        #[arg(long)]
        location: Option<String>,
        #[arg(long)]
        disabled: bool,
        #[command(flatten)]
        remote: Remote,
    },
    List {
        #[command(flatten)]
        tenant: TenantArg,
        /// Prefix of UPN or display name.
        #[arg(long)]
        search: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
    Show {
        #[command(flatten)]
        tenant: TenantArg,
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
    Update {
        #[command(flatten)]
        tenant: TenantArg,
        id: String,
        #[arg(long)]
        upn: Option<String>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        location: Option<String>,
        #[arg(long)]
        enabled: Option<bool>,
        #[command(flatten)]
        remote: Remote,
    },
    Delete {
        #[command(flatten)]
        tenant: TenantArg,
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
enum LicenseCmd {
    /// Assign a licence (or change its disabled plans).
    Assign {
        #[command(flatten)]
        tenant: TenantArg,
        /// User id or userPrincipalName.
        #[arg(long)]
        user: String,
        /// skuPartNumber or skuId.
        #[arg(long)]
        sku: String,
        /// Service plans to disable (name like TEAMS1, or id); repeatable.
        #[arg(long = "disable")]
        disabled: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Take a licence back.
    Remove {
        #[command(flatten)]
        tenant: TenantArg,
        #[arg(long)]
        user: String,
        #[arg(long)]
        sku: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// A user's licences.
    Show {
        #[command(flatten)]
        tenant: TenantArg,
        #[arg(long)]
        user: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Seats per SKU: bought, assigned, available (subscribedSkus).
    Summary {
        #[command(flatten)]
        tenant: TenantArg,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    List {
        #[command(flatten)]
        tenant: TenantArg,
        #[arg(long)]
        action: Option<String>,
        #[arg(long, default_value_t = 50)]
        top: u32,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Issue a tenant-scoped token with one role (shown once).
    Create {
        #[command(flatten)]
        tenant: TenantArg,
        /// GlobalAdmin, BillingAdmin, LicenseAdmin, UserAdmin or GlobalReader.
        #[arg(long)]
        role: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Revoke a token: it stops working at once, on every server sharing the database.
    Revoke {
        #[command(flatten)]
        tenant: TenantArg,
        /// The token's id (not the secret), as `token create` printed with --json.
        id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand, Debug)]
enum AppCmd {
    /// Register an application with one role; its client secret is shown once.
    Create {
        #[command(flatten)]
        tenant: TenantArg,
        /// GlobalAdmin, BillingAdmin, LicenseAdmin, UserAdmin or GlobalReader.
        #[arg(long)]
        role: String,
        /// The application's display name.
        #[arg(long, default_value = "tenantry app")]
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the tenant's applications (never their secrets).
    List {
        #[command(flatten)]
        tenant: TenantArg,
        #[command(flatten)]
        remote: Remote,
    },
    /// Replace an application's client secret: the old one and its access tokens stop working
    /// at once; the new secret is shown once.
    RotateSecret {
        #[command(flatten)]
        tenant: TenantArg,
        /// The application (client) id.
        client_id: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete an application: its secret and access tokens stop working at once.
    Delete {
        #[command(flatten)]
        tenant: TenantArg,
        /// The application (client) id.
        client_id: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub fn client(remote: &Remote) -> anyhow::Result<Client> {
    let token = std::env::var("TENANTRY_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    Client::new(&remote.server, token)
}

pub fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

pub fn output(remote: &Remote, value: &Value, headers: &[&str], keys: &[&str]) {
    if remote.json {
        println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        );
        return;
    }
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        one => vec![one],
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|v| keys.iter().map(|k| s(v, k)).collect())
        .collect();
    table::print(headers, &rows);
}

/// An application with its client secret, which this answer alone shows.
fn print_secret(remote: &Remote, app: &Value) -> anyhow::Result<()> {
    if remote.json {
        println!("{}", serde_json::to_string_pretty(app)?);
        return Ok(());
    }
    println!("Application {} ({})", s(app, "displayName"), s(app, "role"));
    println!("  tenant id:     {}", s(app, "tenantId"));
    println!("  client id:     {}", s(app, "clientId"));
    println!(
        "  client secret (shown only this once): {}",
        s(app, "clientSecret")
    );
    println!(
        "Token endpoint: POST /{}/oauth2/v2.0/token",
        s(app, "tenantId")
    );
    Ok(())
}

/// Accepts a skuPartNumber or a skuId and returns the SKU object.
async fn find_sku(client: &Client, wanted: &str) -> anyhow::Result<Value> {
    let skus = client.get_all("/v1/skus").await?;
    skus.into_iter()
        .find(|sku| {
            s(sku, "skuId").eq_ignore_ascii_case(wanted)
                || s(sku, "skuPartNumber").eq_ignore_ascii_case(wanted)
        })
        .ok_or_else(|| anyhow!("no SKU '{wanted}' in the catalog; `tenantry sku list` shows them"))
}

const SUB_HEADERS: [&str; 7] = [
    "ID",
    "SKU",
    "SEATS",
    "STATUS",
    "CHANNEL",
    "RENEWS/ENDS",
    "AUTO-RENEW",
];
const SUB_KEYS: [&str; 7] = [
    "id",
    "skuPartNumber",
    "quantity",
    "status",
    "channel",
    "termEndDateTime",
    "autoRenew",
];
const USER_HEADERS: [&str; 5] = [
    "ID",
    "USER PRINCIPAL NAME",
    "DISPLAY NAME",
    "LOCATION",
    "ENABLED",
];
const USER_KEYS: [&str; 5] = [
    "id",
    "userPrincipalName",
    "displayName",
    "usageLocation",
    "accountEnabled",
];

fn describe_outcome(v: &Value) {
    use tenantry_app::format::money;
    let Some(outcome) = v.get("outcome") else {
        return;
    };
    let cents = |k: &str| outcome.get(k).and_then(Value::as_u64).unwrap_or(0);
    if cents("chargedCents") > 0 {
        println!("Charged now: {}", money(cents("chargedCents")));
    }
    if cents("refundedCents") > 0 {
        println!("Refunded: {}", money(cents("refundedCents")));
    }
    if let Some(change) = outcome.get("money") {
        let refund = change
            .get("refundedCents")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if refund > 0 {
            println!("Refunded: {}", money(refund));
        }
    }
    if let Some(q) = outcome.get("scheduledQuantity").and_then(Value::as_u64) {
        println!(
            "Outside the 7-day refund window: the reduction to {q} seats is scheduled for the renewal date ({}).",
            s(v, "termEndDateTime")
        );
    }
    if outcome.get("immediate") == Some(&Value::Bool(false)) {
        println!("Outside the 7-day refund window: recurring billing is off and the subscription ends on {}.", s(v, "termEndDateTime"));
    }
}

/// The engines report reconnects and retries as warnings on stderr (`RUST_LOG` to change).
fn engine_logging() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .try_init();
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await.map(|_| ExitCode::SUCCESS),
        Command::Mail(cmd) => {
            engine_logging();
            // As the engine documents: 1 = not everything copied or verified, 2 = could not run.
            Ok(tenantry_mail::cli::run(cmd).await.unwrap_or_else(|e| {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }))
        }
        Command::Files(cmd) => {
            engine_logging();
            tenantry_files::cli::run(cmd).await
        }
        Command::Calendars(cmd) => {
            engine_logging();
            Ok(tenantry_pim::cli::run(tenantry_pim::kind::Kind::Calendars, cmd).await)
        }
        Command::Contacts(cmd) => {
            engine_logging();
            Ok(tenantry_pim::cli::run(tenantry_pim::kind::Kind::Contacts, cmd).await)
        }
        Command::Move(cmd) => crate::moves_cli::run_move(cmd).await,
        Command::Profile(cmd) => crate::moves_cli::run_profile(cmd).await,
        Command::Tenant(cmd) => tenant(cmd).await,
        Command::Sku(SkuCmd::List { remote }) => {
            let skus = client(&remote)?.get_all("/v1/skus").await?;
            output(
                &remote,
                &Value::Array(skus),
                &["SKU ID", "PART NUMBER", "NAME"],
                &["skuId", "skuPartNumber", "displayName"],
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Subscription(cmd) => subscription(cmd).await,
        Command::User(cmd) => user(cmd).await,
        Command::License(cmd) => license(cmd).await,
        Command::Audit(AuditCmd::List {
            tenant,
            action,
            top,
            remote,
        }) => {
            let mut path = format!("/v1/tenants/{}/auditLogs?$top={top}", tenant.tenant);
            if let Some(a) = action {
                path.push_str(&format!("&action={}", tenantry_api::routes::urlencode(&a)));
            }
            let page = client(&remote)?.get(&path).await?;
            output(
                &remote,
                page.get("value").unwrap_or(&Value::Null),
                &["WHEN", "WHO", "WHAT", "TARGET", "CHANGE"],
                &[
                    "activityDateTime",
                    "actorName",
                    "action",
                    "targetName",
                    "summary",
                ],
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCmd::Create {
            tenant,
            role,
            remote,
        }) => {
            let token = client(&remote)?
                .post(
                    &format!("/v1/tenants/{}/tokens", tenant.tenant),
                    json!({"role": role}),
                )
                .await?;
            if remote.json {
                println!("{}", serde_json::to_string_pretty(&token)?);
            } else {
                println!(
                    "Token for role {} (shown only this once):",
                    s(&token, "role")
                );
                println!("  {}", s(&token, "token"));
                println!("Token id (to revoke it): {}", s(&token, "id"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::App(AppCmd::Create {
            tenant,
            role,
            name,
            remote,
        }) => {
            let app = client(&remote)?
                .post(
                    &format!("/v1/tenants/{}/applications", tenant.tenant),
                    json!({"displayName": name, "role": role}),
                )
                .await?;
            print_secret(&remote, &app)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::App(AppCmd::List { tenant, remote }) => {
            let apps = client(&remote)?
                .get(&format!("/v1/tenants/{}/applications", tenant.tenant))
                .await?;
            output(
                &remote,
                apps.get("value").unwrap_or(&Value::Null),
                &["CLIENT ID", "NAME", "ROLE", "CREATED"],
                &["clientId", "displayName", "role", "createdDateTime"],
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::App(AppCmd::RotateSecret {
            tenant,
            client_id,
            remote,
        }) => {
            let app = client(&remote)?
                .post(
                    &format!(
                        "/v1/tenants/{}/applications/{}/rotateSecret",
                        tenant.tenant,
                        tenantry_api::routes::urlencode(&client_id)
                    ),
                    json!({}),
                )
                .await?;
            print_secret(&remote, &app)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::App(AppCmd::Delete {
            tenant,
            client_id,
            remote,
        }) => {
            client(&remote)?
                .delete(&format!(
                    "/v1/tenants/{}/applications/{}",
                    tenant.tenant,
                    tenantry_api::routes::urlencode(&client_id)
                ))
                .await?;
            if !remote.json {
                println!(
                    "Deleted application {client_id}: its secret and access tokens no longer work."
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCmd::Revoke { tenant, id, remote }) => {
            client(&remote)?
                .delete(&format!("/v1/tenants/{}/tokens/{id}", tenant.tenant))
                .await?;
            if !remote.json {
                println!("Revoked token {id}.");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn tenant(cmd: TenantCmd) -> anyhow::Result<ExitCode> {
    let (headers, keys) = (
        ["ID", "NAME", "DOMAIN", "CREATED"],
        ["id", "displayName", "defaultDomain", "createdDateTime"],
    );
    match cmd {
        TenantCmd::Create {
            name,
            domain,
            remote,
        } => {
            let t = client(&remote)?
                .post(
                    "/v1/tenants",
                    json!({"displayName": name, "defaultDomain": domain}),
                )
                .await?;
            output(&remote, &t, &headers, &keys);
        }
        TenantCmd::List { remote } => {
            let all = client(&remote)?.get_all("/v1/tenants").await?;
            output(&remote, &Value::Array(all), &headers, &keys);
        }
        TenantCmd::Show { id, remote } => {
            let t = client(&remote)?.get(&format!("/v1/tenants/{id}")).await?;
            output(&remote, &t, &headers, &keys);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn subscription(cmd: SubscriptionCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        SubscriptionCmd::Create {
            tenant,
            sku,
            quantity,
            channel,
            billing_cycle,
            term,
            trial,
            remote,
        } => {
            let c = client(&remote)?;
            let sku = find_sku(&c, &sku).await?;
            let body = json!({
                "skuId": sku["skuId"], "quantity": quantity, "channel": channel,
                "billingCycle": billing_cycle, "term": term, "isTrial": trial,
            });
            let sub = c
                .post(
                    &format!("/v1/tenants/{}/subscriptions", tenant.tenant),
                    body,
                )
                .await?;
            output(&remote, &sub, &SUB_HEADERS, &SUB_KEYS);
            if !remote.json {
                describe_outcome(&sub);
            }
        }
        SubscriptionCmd::List { tenant, remote } => {
            let all = client(&remote)?
                .get_all(&format!("/v1/tenants/{}/subscriptions", tenant.tenant))
                .await?;
            output(&remote, &Value::Array(all), &SUB_HEADERS, &SUB_KEYS);
        }
        SubscriptionCmd::Show { tenant, id, remote } => {
            let sub = client(&remote)?
                .get(&format!("/v1/tenants/{}/subscriptions/{id}", tenant.tenant))
                .await?;
            output(&remote, &sub, &SUB_HEADERS, &SUB_KEYS);
        }
        SubscriptionCmd::SetQuantity {
            tenant,
            id,
            quantity,
            remote,
        } => {
            let sub = client(&remote)?
                .patch(
                    &format!("/v1/tenants/{}/subscriptions/{id}", tenant.tenant),
                    json!({"quantity": quantity}),
                )
                .await?;
            output(&remote, &sub, &SUB_HEADERS, &SUB_KEYS);
            if !remote.json {
                describe_outcome(&sub);
            }
        }
        SubscriptionCmd::Cancel { tenant, id, remote } => {
            let sub = client(&remote)?
                .post(
                    &format!("/v1/tenants/{}/subscriptions/{id}/cancel", tenant.tenant),
                    json!({}),
                )
                .await?;
            output(&remote, &sub, &SUB_HEADERS, &SUB_KEYS);
            if !remote.json {
                describe_outcome(&sub);
            }
        }
        SubscriptionCmd::Reactivate { tenant, id, remote } => {
            let sub = client(&remote)?
                .post(
                    &format!(
                        "/v1/tenants/{}/subscriptions/{id}/reactivate",
                        tenant.tenant
                    ),
                    json!({}),
                )
                .await?;
            output(&remote, &sub, &SUB_HEADERS, &SUB_KEYS);
        }
        SubscriptionCmd::Transfer {
            tenant,
            id,
            to,
            remote,
        } => {
            let result = client(&remote)?
                .post(
                    &format!("/v1/tenants/{}/subscriptions/{id}/transfer", tenant.tenant),
                    json!({"targetTenantId": to}),
                )
                .await;
            match result {
                Err(e) => match e.downcast_ref::<Problem>() {
                    Some(p) if p.code == "LicenseTransferNotSupported" => {
                        eprintln!("Licences cannot be transferred between tenants.\n");
                        eprintln!("{}", p.detail);
                        eprintln!("\nNext step: plan a tenant move with `tenantry move plan` (POST /v1/moves).");
                        return Ok(ExitCode::from(2));
                    }
                    _ => return Err(e),
                },
                Ok(_) => bail!("the server accepted a transfer, which tenantry never does; check the server version"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn user(cmd: UserCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        UserCmd::Create {
            tenant,
            upn,
            name,
            location,
            disabled,
            remote,
        } => {
            let u = client(&remote)?
                .post(
                    &format!("/v1/tenants/{}/users", tenant.tenant),
                    json!({"userPrincipalName": upn, "displayName": name, "usageLocation": location, "accountEnabled": !disabled}),
                )
                .await?;
            output(&remote, &u, &USER_HEADERS, &USER_KEYS);
        }
        UserCmd::List {
            tenant,
            search,
            remote,
        } => {
            let mut path = format!("/v1/tenants/{}/users", tenant.tenant);
            if let Some(q) = search {
                path.push_str(&format!("?$search={}", tenantry_api::routes::urlencode(&q)));
            }
            let all = client(&remote)?.get_all(&path).await?;
            output(&remote, &Value::Array(all), &USER_HEADERS, &USER_KEYS);
        }
        UserCmd::Show { tenant, id, remote } => {
            let u = client(&remote)?
                .get(&format!("/v1/tenants/{}/users/{id}", tenant.tenant))
                .await?;
            output(&remote, &u, &USER_HEADERS, &USER_KEYS);
        }
        UserCmd::Update {
            tenant,
            id,
            upn,
            name,
            location,
            enabled,
            remote,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(v) = upn {
                body.insert("userPrincipalName".into(), json!(v));
            }
            if let Some(v) = name {
                body.insert("displayName".into(), json!(v));
            }
            if let Some(v) = location {
                body.insert(
                    "usageLocation".into(),
                    if v.is_empty() { Value::Null } else { json!(v) },
                );
            }
            if let Some(v) = enabled {
                body.insert("accountEnabled".into(), json!(v));
            }
            let u = client(&remote)?
                .patch(
                    &format!("/v1/tenants/{}/users/{id}", tenant.tenant),
                    Value::Object(body),
                )
                .await?;
            output(&remote, &u, &USER_HEADERS, &USER_KEYS);
        }
        UserCmd::Delete { tenant, id, remote } => {
            client(&remote)?
                .delete(&format!("/v1/tenants/{}/users/{id}", tenant.tenant))
                .await?;
            if !remote.json {
                println!("Deleted user {id}; their licences are free again.");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A user id or userPrincipalName as a path segment.
fn user_path(user: &str) -> String {
    tenantry_api::routes::urlencode(user)
}

async fn license(cmd: LicenseCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        LicenseCmd::Assign {
            tenant,
            user,
            sku,
            disabled,
            remote,
        } => {
            let c = client(&remote)?;
            let sku = find_sku(&c, &sku).await?;
            let plans = sku["servicePlans"].as_array().cloned().unwrap_or_default();
            let mut disabled_ids = Vec::new();
            for wanted in &disabled {
                let plan = plans
                    .iter()
                    .find(|p| {
                        s(p, "servicePlanName").eq_ignore_ascii_case(wanted)
                            || s(p, "servicePlanId").eq_ignore_ascii_case(wanted)
                    })
                    .ok_or_else(|| {
                        anyhow!(
                            "{} has no service plan '{wanted}'",
                            s(&sku, "skuPartNumber")
                        )
                    })?;
                disabled_ids.push(plan["servicePlanId"].clone());
            }
            let body = json!({"addLicenses": [{"skuId": sku["skuId"], "disabledPlans": disabled_ids}], "removeLicenses": []});
            let u = c
                .post(
                    &format!(
                        "/v1/tenants/{}/users/{}/assignLicense",
                        tenant.tenant,
                        user_path(&user)
                    ),
                    body,
                )
                .await?;
            output(&remote, &u, &USER_HEADERS, &USER_KEYS);
        }
        LicenseCmd::Remove {
            tenant,
            user,
            sku,
            remote,
        } => {
            let c = client(&remote)?;
            let sku = find_sku(&c, &sku).await?;
            let body = json!({"addLicenses": [], "removeLicenses": [sku["skuId"]]});
            let u = c
                .post(
                    &format!(
                        "/v1/tenants/{}/users/{}/assignLicense",
                        tenant.tenant,
                        user_path(&user)
                    ),
                    body,
                )
                .await?;
            output(&remote, &u, &USER_HEADERS, &USER_KEYS);
        }
        LicenseCmd::Show {
            tenant,
            user,
            remote,
        } => {
            let page = client(&remote)?
                .get(&format!(
                    "/v1/tenants/{}/users/{}/licenseDetails",
                    tenant.tenant,
                    user_path(&user)
                ))
                .await?;
            let mut rows = Vec::new();
            for detail in page["value"].as_array().cloned().unwrap_or_default() {
                let disabled: Vec<String> = detail["servicePlans"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| s(p, "provisioningStatus") == "Disabled")
                    .map(|p| s(p, "servicePlanName"))
                    .collect();
                rows.push(json!({"skuPartNumber": detail["skuPartNumber"], "skuId": detail["skuId"], "disabled": disabled.join(",")}));
            }
            if remote.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                output(
                    &remote,
                    &Value::Array(rows),
                    &["SKU", "SKU ID", "DISABLED PLANS"],
                    &["skuPartNumber", "skuId", "disabled"],
                );
            }
        }
        LicenseCmd::Summary { tenant, remote } => {
            let page = client(&remote)?
                .get(&format!("/v1/tenants/{}/subscribedSkus", tenant.tenant))
                .await?;
            if remote.json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = page["value"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|sku| {
                    let units = &sku["prepaidUnits"];
                    let enabled = units["enabled"].as_u64().unwrap_or(0)
                        + units["warning"].as_u64().unwrap_or(0);
                    let consumed = sku["consumedUnits"].as_u64().unwrap_or(0);
                    vec![
                        s(sku, "skuPartNumber"),
                        s(sku, "capabilityStatus"),
                        enabled.to_string(),
                        consumed.to_string(),
                        enabled.saturating_sub(consumed).to_string(),
                    ]
                })
                .collect();
            table::print(&["SKU", "STATUS", "SEATS", "ASSIGNED", "AVAILABLE"], &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}
