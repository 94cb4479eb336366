//! Tenant moves (operator only, as in the API): the list, the create form, connection profiles,
//! the plan of a move, run / pause / resume / cancel, live progress and the report.
//!
//! A move spans two tenants, so a tenant principal is refused (403) with an explanation. The
//! rules are the mover's: starting goes through `Mover::start` (re-plan, refuse blockers, record
//! the steps), pausing and cancelling through `Ledger::set_move_state` with the mover's
//! `PAUSE_FROM` / `CANCEL_FROM`, profiles through `Mover::create_profile` (sealed at rest).

use crate::account::load_tenant;
use crate::ctx::{Ctx, Errors, FormData, FormError, Posted, WebError, WebResult};
use crate::views::{
    date, date_time, money, DavInput, FindingRow, Layout, MoveNewPage, MovePage,
    MoveProgressFragment, MoveReportPage, MoveRow, MoveSummary, MovesPage, PlanCostRow,
    PlanLicenceRow, PlanUserRow, PlanView, ProfileRow, ProfilesPage, ProgressView, ReportRow,
    RunningStepBar, SourceActionRow, TenantOption,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::Arc;
use tenantry_api::AppState;
use tenantry_ledger::guidance;
use tenantry_ledger::{TenantId, Timestamp};
use tenantry_mover::control::{blocker_lines, can_start, Start, CANCEL_FROM, PAUSE_FROM};
use tenantry_mover::gather::Mover;
use tenantry_moves::model::{
    parse_user_csv, DavServer, DomainRewrite, LibraryMapping, MailServer, MovePath, MoveSpec,
    PimServers,
};
use tenantry_moves::plan::{Plan, Severity, SourceAction, Step, TargetPurchase};
use tenantry_store::moves::{MoveRecord, MoveState, StepProgress, StepRecord, StepState};
use tenantry_store::PageRequest;
use uuid::Uuid;

/// Moves listed on one page (the store pages by creation order).
const MAX_MOVES: u32 = 1000;

pub const OPERATOR_ONLY: &str = "Tenant moves span two tenants, so only the platform operator plans and runs them. \
    Ask the operator of this platform to plan a move for your organisation; your licences and users stay as they are until then.";
pub const NOT_ENABLED: &str =
    "Tenant moves are not enabled on this server (it runs without the move worker).";

/// Moves are for the operator only: a tenant principal gets a 403 page that says why.
fn operator_only(ctx: &Ctx) -> WebResult<()> {
    if ctx.principal.is_operator() {
        Ok(())
    } else {
        Err(WebError::new(StatusCode::FORBIDDEN, OPERATOR_ONLY))
    }
}

fn mover(app: &AppState) -> WebResult<&Arc<Mover>> {
    app.mover
        .as_ref()
        .ok_or_else(|| WebError::new(StatusCode::SERVICE_UNAVAILABLE, NOT_ENABLED))
}

fn move_id(raw: &str) -> WebResult<Uuid> {
    raw.parse().map_err(|_| WebError::not_found("move"))
}

async fn tenant_names(app: &AppState) -> WebResult<HashMap<TenantId, String>> {
    Ok(app
        .store
        .list_tenants(PageRequest {
            top: 1000,
            after: None,
        })
        .await?
        .items
        .into_iter()
        .map(|t| (t.id, t.display_name))
        .collect())
}

fn name_of(names: &HashMap<TenantId, String>, id: TenantId) -> String {
    names
        .get(&id)
        .cloned()
        .unwrap_or_else(|| format!("unknown tenant {id}"))
}

fn path_label(path: MovePath) -> &'static str {
    match path {
        MovePath::RetireSource => "Retire the source",
        MovePath::KeepSource => "Keep the source",
    }
}

fn progress_of(steps: &[StepRecord]) -> (usize, Option<&StepRecord>) {
    let done = steps.iter().filter(|s| s.state == StepState::Done).count();
    (done, steps.iter().find(|s| s.state != StepState::Done))
}

async fn move_rows(
    app: &AppState,
    names: &HashMap<TenantId, String>,
    only: Option<TenantId>,
) -> WebResult<Vec<MoveRow>> {
    let moves = app
        .store
        .list_moves(PageRequest {
            top: MAX_MOVES,
            after: None,
        })
        .await?;
    let mut rows = Vec::new();
    // Newest first.
    for m in moves.items.iter().rev() {
        if let Some(t) = only {
            if m.spec.source_tenant_id != t && m.spec.target_tenant_id != t {
                continue;
            }
        }
        let steps = app.store.steps(m.id).await?;
        let (done, _) = progress_of(&steps);
        rows.push(MoveRow {
            id: m.id.to_string(),
            state: m.state.as_str(),
            source: name_of(names, m.spec.source_tenant_id),
            target: name_of(names, m.spec.target_tenant_id),
            path: path_label(m.spec.path),
            done,
            steps: steps.len(),
            created: date_time(m.created_at),
        });
    }
    Ok(rows)
}

/// `/moves`: every move.
pub async fn list(State(app): State<AppState>, ctx: Ctx) -> WebResult {
    operator_only(&ctx)?;
    let names = tenant_names(&app).await?;
    let moves = move_rows(&app, &names, None).await?;
    ctx.page(
        StatusCode::OK,
        MovesPage {
            l: Layout::new(&ctx, "Tenant moves", "all-moves", None),
            tenant: None,
            moves,
            enabled: app.mover.is_some(),
            not_enabled: NOT_ENABLED,
        },
    )
}

/// `/tenants/{tenant}/moves`: the moves this tenant is the source or the target of.
pub async fn tenant_moves(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> WebResult {
    // Another tenant: 404 first (no existence leak), then the operator-only rule.
    let t = load_tenant(&app, &ctx, &tenant).await?;
    operator_only(&ctx)?;
    let names = tenant_names(&app).await?;
    let moves = move_rows(&app, &names, Some(t.id)).await?;
    ctx.page(
        StatusCode::OK,
        MovesPage {
            l: Layout::new(&ctx, "Moves", "moves", Some(&t)),
            tenant: Some((t.id.to_string(), t.display_name.clone())),
            moves,
            enabled: app.mover.is_some(),
            not_enabled: NOT_ENABLED,
        },
    )
}

#[derive(serde::Deserialize, Default)]
pub struct NewQuery {
    #[serde(default)]
    source: String,
}

async fn new_page(
    app: &AppState,
    ctx: &Ctx,
    form: &FormData,
    source: &str,
    err: Errors,
) -> WebResult {
    let mut tenants: Vec<TenantOption> = app
        .store
        .list_tenants(PageRequest {
            top: 1000,
            after: None,
        })
        .await?
        .items
        .into_iter()
        .map(|t| TenantOption {
            id: t.id.to_string(),
            label: format!("{} ({})", t.display_name, t.default_domain),
        })
        .collect();
    tenants.sort_by(|a, b| a.label.cmp(&b.label));
    let profiles = app
        .store
        .list_profiles()
        .await?
        .into_iter()
        .map(|p| p.name)
        .collect();
    let fresh = form.0.is_empty();
    let field = |name: &str| form.get(name).to_string();
    let status = err.status();
    ctx.page(
        status,
        MoveNewPage {
            l: Layout::new(ctx, "Plan a tenant move", "all-moves", None),
            tenants,
            profiles,
            source: if fresh {
                source.to_string()
            } else {
                field("source")
            },
            target: field("target"),
            keep: field("path") == "keep-source",
            users_csv: field("users"),
            rewrite_from: field("rewrite_from"),
            rewrite_to: field("rewrite_to"),
            allow_purchase: fresh || form.checked("allow_purchase"),
            source_mail_url: field("source_mail_url"),
            source_mail_profile: field("source_mail_profile"),
            target_mail_url: field("target_mail_url"),
            target_mail_profile: field("target_mail_profile"),
            libraries: field("libraries"),
            library_source_profile: field("library_source_profile"),
            library_target_profile: field("library_target_profile"),
            dav_servers: DAV_FIELDS
                .iter()
                .map(|(name, label, placeholder)| DavInput {
                    field: name,
                    label,
                    placeholder,
                    url: field(&format!("{name}_url")),
                    profile: field(&format!("{name}_profile")),
                })
                .collect(),
            err,
        },
    )
}

/// `/moves/new`: the create form (`?source=` pre-selects the source tenant).
pub async fn new_form(
    State(app): State<AppState>,
    ctx: Ctx,
    query: Result<Query<NewQuery>, QueryRejection>,
) -> WebResult {
    operator_only(&ctx)?;
    mover(&app)?;
    let q = query.map(|q| q.0).unwrap_or_default();
    new_page(
        &app,
        &ctx,
        &FormData::default(),
        &q.source,
        Errors::default(),
    )
    .await
}

fn optional(value: &str) -> Option<String> {
    let v = value.trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn mail_server(form: &FormData, side: &str) -> Result<Option<MailServer>, FormError> {
    let url = optional(form.get(&format!("{side}_mail_url")));
    let profile = optional(form.get(&format!("{side}_mail_profile")));
    match (url, profile) {
        (None, None) => Ok(None),
        (Some(url), Some(profile)) => Ok(Some(MailServer { url, profile })),
        _ => Err(FormError::invalid(
            "create",
            format!(
                "Give both the {side} mail server's URL and its connection profile, or neither."
            ),
        )),
    }
}

/// What a move's CalDAV/CardDAV servers carry, for its page.
fn dav_summary(pim: &PimServers) -> String {
    let carried: Vec<String> = pim
        .kinds()
        .into_iter()
        .filter_map(|kind| match pim.of(kind) {
            (Some(s), Some(t)) => Some(format!(
                "{}: {} ({}) → {} ({})",
                kind.name(),
                s.url,
                s.profile,
                t.url,
                t.profile
            )),
            _ => None,
        })
        .collect();
    if carried.is_empty() {
        "None".into()
    } else {
        carried.join(" · ")
    }
}

/// The CalDAV/CardDAV inputs of the create form: field, label, placeholder.
const DAV_FIELDS: [(&str, &str, &str); 4] = [
    (
        "source_caldav",
        "Source CalDAV server",
        "caldavs://dav.fabrikam.com/",
    ),
    (
        "target_caldav",
        "Target CalDAV server",
        "caldavs://dav.contoso.com/",
    ),
    (
        "source_carddav",
        "Source CardDAV server",
        "carddavs://dav.fabrikam.com/",
    ),
    (
        "target_carddav",
        "Target CardDAV server",
        "carddavs://dav.contoso.com/",
    ),
];

/// A CalDAV/CardDAV server of the form: its URL and connection profile, both or neither.
fn dav_server(form: &FormData, field: &str, label: &str) -> Result<Option<DavServer>, FormError> {
    let url = optional(form.get(&format!("{field}_url")));
    let profile = optional(form.get(&format!("{field}_profile")));
    match (url, profile) {
        (None, None) => Ok(None),
        (Some(url), Some(profile)) => Ok(Some(DavServer { url, profile })),
        _ => Err(FormError::invalid(
            "create",
            format!("Give both the URL and the connection profile of the {label}, or neither."),
        )),
    }
}

fn pim_servers(form: &FormData) -> Result<PimServers, FormError> {
    let [sc, tc, sd, td] = DAV_FIELDS.map(|(field, label, _)| dav_server(form, field, label));
    Ok(PimServers {
        source_caldav: sc?,
        target_caldav: tc?,
        source_carddav: sd?,
        target_carddav: td?,
    })
}

/// The move a submitted create form describes.
fn spec_of(form: &FormData) -> Result<MoveSpec, FormError> {
    let tenant = |name: &str, what: &str| {
        form.get(name)
            .parse::<TenantId>()
            .map_err(|_| FormError::invalid("create", format!("Choose the {what} tenant.")))
    };
    let source = tenant("source", "source")?;
    let target = tenant("target", "target")?;
    let path = match form.get("path") {
        "retire-source" => MovePath::RetireSource,
        "keep-source" => MovePath::KeepSource,
        _ => {
            return Err(FormError::invalid(
                "create",
                "Choose what happens to the source: retire it or keep it.",
            ))
        }
    };
    let users =
        parse_user_csv(form.get("users")).map_err(|e| FormError::from_web("create", e.into()))?;
    let domain_rewrite =
        match (
            optional(form.get("rewrite_from")),
            optional(form.get("rewrite_to")),
        ) {
            (None, None) => None,
            (Some(from), Some(to)) => Some(DomainRewrite {
                from: from.trim_start_matches('@').to_string(),
                to: to.trim_start_matches('@').to_string(),
            }),
            _ => return Err(FormError::invalid(
                "create",
                "A domain rewrite needs both domains: from (the source's) and to (the target's).",
            )),
        };
    let source_profile = optional(form.get("library_source_profile"));
    let target_profile = optional(form.get("library_target_profile"));
    let mut libraries = Vec::new();
    for (n, line) in form.get("libraries").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((s, t)) if !s.trim().is_empty() && !t.trim().is_empty() => {
                libraries.push(LibraryMapping {
                    source: s.trim().to_string(),
                    target: t.trim().to_string(),
                    source_profile: source_profile.clone(),
                    target_profile: target_profile.clone(),
                })
            }
            _ => {
                return Err(FormError::invalid(
                    "create",
                    format!(
                        "Libraries, line {}: expected `source=target`, found `{line}`.",
                        n + 1
                    ),
                ))
            }
        }
    }
    Ok(MoveSpec {
        source_tenant_id: source,
        target_tenant_id: target,
        path,
        users,
        domain_rewrite,
        allow_purchase: form.checked("allow_purchase"),
        source_mail: mail_server(form, "source")?,
        target_mail: mail_server(form, "target")?,
        libraries,
        source_graph: None,
        target_graph: None,
        pim: Box::new(pim_servers(form)?),
    })
}

/// `POST /moves`: stores the move (Draft) and shows its plan.
pub async fn create(State(app): State<AppState>, Posted { ctx, form }: Posted) -> WebResult {
    operator_only(&ctx)?;
    mover(&app)?;
    let result = async {
        let spec = spec_of(&form)?;
        app.ledger
            .create_move(spec, ctx.actor(), app.clock.now())
            .await
            .map_err(|e| FormError::from_store("create", e))
    }
    .await;
    match result {
        Ok(m) => Ok(ctx.done(
            &format!("/moves/{}", m.id),
            "Move created (Draft). Check its plan below, then run it.",
        )),
        Err(e) => new_page(&app, &ctx, &form, "", e.into()).await,
    }
}

async fn profiles_page(app: &AppState, ctx: &Ctx, form: &FormData, err: Errors) -> WebResult {
    let profiles = app
        .store
        .list_profiles()
        .await?
        .into_iter()
        .map(|p| ProfileRow {
            name: p.name,
            kind: p.kind.as_str().to_string(),
            username: p.username,
            created: date_time(p.created_at),
        })
        .collect();
    let status = err.status();
    ctx.page(
        status,
        ProfilesPage {
            l: Layout::new(ctx, "Connection profiles", "all-moves", None),
            profiles,
            name: form.get("name").to_string(),
            webdav: form.get("kind") == "webdav",
            username: form.get("username").to_string(),
            err,
        },
    )
}

/// `/moves/profiles`: connection profiles (never their secrets) and the form to add one.
pub async fn profiles(State(app): State<AppState>, ctx: Ctx) -> WebResult {
    operator_only(&ctx)?;
    mover(&app)?;
    profiles_page(&app, &ctx, &FormData::default(), Errors::default()).await
}

pub async fn create_profile(
    State(app): State<AppState>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    operator_only(&ctx)?;
    let mover = mover(&app)?;
    match mover
        .create_profile(
            form.get("name"),
            form.get("kind"),
            form.get("username"),
            form.get("password"),
            app.clock.now(),
        )
        .await
    {
        Ok(p) => Ok(ctx.done(
            "/moves/profiles",
            format!(
                "Connection profile {} saved; its password is stored encrypted and will not be shown again.",
                p.name
            ),
        )),
        Err(e) => {
            // Never echo the password back.
            let mut typed = form;
            typed.0.retain(|(k, _)| k != "password");
            profiles_page(&app, &ctx, &typed, FormError::from_store("profile", e).into()).await
        }
    }
}

/// `POST /moves/profiles/login`: replaces a profile's user name and password.
pub async fn update_profile(
    State(app): State<AppState>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    operator_only(&ctx)?;
    let mover = mover(&app)?;
    let name = form.get("name").to_string();
    match mover
        .update_profile(&name, form.get("username"), form.get("password"))
        .await
    {
        Ok(p) => Ok(ctx.done(
            "/moves/profiles",
            format!(
                "The login of connection profile {} is replaced; resume a move that failed on it.",
                p.name
            ),
        )),
        Err(e) => {
            let empty = FormData::default();
            profiles_page(&app, &ctx, &empty, FormError::from_store("login", e).into()).await
        }
    }
}

fn purchase_text(p: &TargetPurchase) -> String {
    match p {
        TargetPurchase::None => "None: enough free licences".into(),
        TargetPurchase::AddSeats {
            subscription_id,
            from,
            to,
        } => format!("Add licences to subscription {subscription_id}: {from} → {to}"),
        TargetPurchase::NewSubscription { quantity } => {
            format!("New subscription of {quantity} licence(s)")
        }
    }
}

fn source_action_row(a: &SourceAction) -> SourceActionRow {
    match a {
        SourceAction::Cancel {
            subscription_id,
            sku_part_number,
            immediate,
            effective_at,
            refund_cents,
        } => SourceActionRow {
            part: sku_part_number.clone(),
            subscription: subscription_id.to_string(),
            text: if *immediate {
                format!(
                    "Cancel now (inside the refund window): disabled on {}",
                    date(*effective_at)
                )
            } else {
                format!(
                    "Cancel at the end of the term: recurring billing stops, ends on {}",
                    date(*effective_at)
                )
            },
            refund: money(*refund_cents),
            volume: false,
        },
        SourceAction::Reduce {
            subscription_id,
            sku_part_number,
            from,
            to,
            removed_now,
            scheduled_at,
            refund_cents,
        } => {
            let mut text = format!("Reduce from {from} to {to} licence(s)");
            if *removed_now > 0 {
                text.push_str(&format!("; {removed_now} removed now"));
            }
            if let Some(at) = scheduled_at {
                text.push_str(&format!("; the rest at renewal on {}", date(*at)));
            }
            SourceActionRow {
                part: sku_part_number.clone(),
                subscription: subscription_id.to_string(),
                text,
                refund: money(*refund_cents),
                volume: false,
            }
        }
        SourceAction::VolumeLicensing {
            subscription_id,
            sku_part_number,
            quantity,
        } => SourceActionRow {
            part: sku_part_number.clone(),
            subscription: subscription_id.to_string(),
            text: format!(
                "Volume licensing ({quantity} licence(s)): nothing is changed here. {}",
                guidance::VOLUME_READ_ONLY
            ),
            refund: money(0),
            volume: true,
        },
    }
}

pub fn step_text(step: &Step) -> String {
    match step {
        Step::BuyTargetLicences {
            sku_part_number,
            purchase,
            ..
        } => format!(
            "Target licences {sku_part_number}: {}",
            purchase_text(purchase)
        ),
        Step::CreateTargetUser {
            source_upn,
            target_upn,
        } => format!("Create {target_upn} in the target (from {source_upn})"),
        Step::AssignTargetLicences { target_upn } => {
            format!("Assign licences to {target_upn} in the target")
        }
        Step::MigrateMailbox {
            source_upn,
            target_upn,
        } => format!("Migrate the mailbox {source_upn} → {target_upn}"),
        Step::MigrateLibrary { source, target, .. } => {
            format!("Migrate the library {source} → {target}")
        }
        Step::MigrateCalendars {
            source_upn,
            target_upn,
        } => format!("Migrate the calendars and task lists {source_upn} → {target_upn}"),
        Step::MigrateContacts {
            source_upn,
            target_upn,
        } => format!("Migrate the address books {source_upn} → {target_upn}"),
        Step::FinalDeltaPass => "Final delta pass (what changed since the first copy)".into(),
        Step::Verify => "Verify both sides".into(),
        Step::UnassignSourceLicences { source_upn } => {
            format!("Unassign {source_upn}'s licences in the source")
        }
        Step::SourceLicences { action } => {
            let row = source_action_row(action);
            format!("Source licences {}: {}", row.part, row.text)
        }
        Step::AwaitTargetSeats {
            tenant_id,
            sku_id,
            sku_part_number,
            seats_to_buy,
            enabled_at_least,
        } => format!(
            "An administrator buys {seats_to_buy} {sku_part_number} seat(s) (skuId {sku_id}) in tenant {tenant_id}; the run waits until {enabled_at_least} are enabled, or an operator confirms"
        ),
        Step::AwaitSourceChange {
            tenant_id,
            action,
            refund_deadlines,
        } => {
            let row = source_action_row(action);
            let deadline = refund_deadlines
                .iter()
                .min()
                .map(|d| format!(" (refunded if done before {})", date_time(*d)))
                .unwrap_or_default();
            format!(
                "An administrator changes tenant {tenant_id}'s {} subscription {}: {}{deadline}; the run waits until Graph shows the change, or an operator confirms",
                row.part, row.subscription, row.text
            )
        }
        Step::Report => "Write the report".into(),
    }
}

fn plan_view(plan: &Plan) -> PlanView {
    let finding = |f: &tenantry_moves::plan::Finding| FindingRow {
        code: f.code.clone(),
        subject: f.subject.clone(),
        message: f.message.clone(),
    };
    PlanView {
        computed: date_time(plan.computed_at),
        fingerprint: plan.fingerprint.chars().take(16).collect(),
        blockers: plan.blockers().map(finding).collect(),
        warnings: plan
            .findings
            .iter()
            .filter(|f| f.severity != Severity::Blocker)
            .map(finding)
            .collect(),
        users: plan
            .users
            .iter()
            .map(|u| PlanUserRow {
                source: u.source_upn.clone(),
                target: u.target_upn.clone(),
                name: u.display_name.clone(),
                location: u.usage_location.clone().unwrap_or_default(),
                licences: u
                    .licences
                    .iter()
                    .map(|l| l.sku_part_number.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                already_created: u.already_created,
            })
            .collect(),
        licences: plan
            .licences
            .iter()
            .map(|l| PlanLicenceRow {
                part: l.sku_part_number.clone(),
                needed: l.seats_needed,
                already: l.already_assigned,
                free: l.target_free,
                to_buy: l.seats_to_buy,
                purchase: purchase_text(&l.purchase),
                charge: money(l.charge_cents),
            })
            .collect(),
        charge_total: money(plan.licences.iter().map(|l| l.charge_cents).sum()),
        source_actions: plan.source_actions.iter().map(source_action_row).collect(),
        refund_total: money(
            plan.source_actions
                .iter()
                .map(|a| match a {
                    SourceAction::Cancel { refund_cents, .. }
                    | SourceAction::Reduce { refund_cents, .. } => *refund_cents,
                    SourceAction::VolumeLicensing { .. } => 0,
                })
                .sum(),
        ),
        costs: plan
            .costs
            .iter()
            .map(|c| PlanCostRow {
                part: c.sku_part_number.clone(),
                seats: c.seats_moved,
                until: date(c.source_pays_until),
                overlap: money(c.overlap_cents),
            })
            .collect(),
        overlap_total: money(plan.costs.iter().map(|c| c.overlap_cents).sum()),
        steps: plan.steps.iter().map(step_text).collect(),
    }
}

/// A bar per running step, with the numbers the application layer computes (rate, end).
fn running_bars(
    steps: &[StepRecord],
    measured: &[StepProgress],
    now: Timestamp,
) -> Vec<RunningStepBar> {
    steps
        .iter()
        .filter(|s| s.state == StepState::Running)
        .map(|s| {
            let view = measured
                .iter()
                .find(|p| p.key == s.key)
                .map(|p| tenantry_app::progress::view(p, s.state));
            let fraction = view.as_ref().and_then(|v| v.fraction());
            let unit = match serde_json::from_value::<Step>(s.step.clone()) {
                Ok(Step::MigrateMailbox { .. }) => "messages",
                Ok(Step::MigrateLibrary { .. }) => "files",
                Ok(Step::MigrateCalendars { .. }) => "events and tasks",
                Ok(Step::MigrateContacts { .. }) => "contacts",
                _ => "items",
            };
            RunningStepBar {
                key: s.key.clone(),
                text: serde_json::from_value::<Step>(s.step.clone())
                    .map(|st| step_text(&st))
                    .unwrap_or_else(|_| s.key.clone()),
                worker: s.lease_owner.clone().unwrap_or_default(),
                permille: fraction.map(|f| (f * 1000.0).floor() as u32),
                percent: fraction.map(|f| (f * 100.0).floor() as u32),
                numbers: view
                    .map(|v| v.numbers(unit, now.0).join(" · "))
                    .unwrap_or_default(),
            }
        })
        .collect()
}

fn progress_view(
    record: &MoveRecord,
    steps: &[StepRecord],
    measured: &[StepProgress],
    now: Timestamp,
) -> ProgressView {
    let (done, current) = progress_of(steps);
    let current = current.map(|s| {
        let text = serde_json::from_value::<Step>(s.step.clone())
            .map(|st| step_text(&st))
            .unwrap_or_else(|_| s.key.clone());
        (text, s.state.as_str(), s.attempts, s.error.clone())
    });
    ProgressView {
        id: record.id.to_string(),
        state: record.state.as_str(),
        running: record.state == MoveState::Running,
        done,
        steps: steps.len(),
        current_text: current.as_ref().map(|c| c.0.clone()).unwrap_or_default(),
        current_state: current.as_ref().map_or("", |c| c.1),
        current_attempts: current.as_ref().map_or(0, |c| c.2),
        current_error: current.and_then(|c| c.3),
        waiting: steps
            .iter()
            .filter(|s| s.state != StepState::Done)
            .filter_map(|s| {
                let w = s.result.as_ref()?.get(tenantry_app::waiting::WAITING)?;
                Some((
                    s.key.clone(),
                    w["message"].as_str().unwrap_or("").to_string(),
                ))
            })
            .collect(),
        running_steps: running_bars(steps, measured, now),
    }
}

/// The page of one move. `fresh`: a plan just computed (by a refused run) to show as is.
async fn move_page(
    app: &AppState,
    ctx: &Ctx,
    id: Uuid,
    err: Errors,
    refused: Vec<String>,
    fresh: Option<Plan>,
) -> WebResult {
    let mover = mover(app)?;
    // Fresh while the move can still start; once it runs, the stored plan its steps follow.
    let plan: Option<Plan> = match fresh {
        Some(p) => Some(p),
        None => Some(mover.current_plan(id, app.clock.now()).await?),
    };
    let record = app.store.get_move(id).await?;
    let steps = app.store.steps(id).await?;
    let names = tenant_names(app).await?;
    let spec = &record.spec;
    let summary = MoveSummary {
        id: record.id.to_string(),
        state: record.state.as_str(),
        source_id: spec.source_tenant_id.to_string(),
        source: name_of(&names, spec.source_tenant_id),
        target_id: spec.target_tenant_id.to_string(),
        target: name_of(&names, spec.target_tenant_id),
        path: path_label(spec.path),
        keep: spec.path == MovePath::KeepSource,
        allow_purchase: spec.allow_purchase,
        mail: match (&spec.source_mail, &spec.target_mail) {
            (Some(s), Some(t)) => format!("{} ({}) → {} ({})", s.url, s.profile, t.url, t.profile),
            _ => "None (licences and users only)".into(),
        },
        libraries: spec.libraries.len(),
        calendars_contacts: dav_summary(&spec.pim),
        created: date_time(record.created_at),
        updated: date_time(record.updated_at),
    };
    let status = err.status();
    ctx.page(
        status,
        MovePage {
            l: Layout::new(ctx, "Tenant move", "all-moves", None),
            m: summary,
            plan: plan.as_ref().map(plan_view),
            recomputed: can_start(record.state),
            runnable: plan.as_ref().is_some_and(|p| p.is_runnable()),
            can_start: can_start(record.state),
            resume: matches!(record.state, MoveState::Paused | MoveState::Failed),
            can_pause: PAUSE_FROM.contains(&record.state),
            can_cancel: CANCEL_FROM.contains(&record.state),
            has_steps: !steps.is_empty(),
            progress: progress_view(
                &record,
                &steps,
                &app.store.step_progress(id).await?,
                app.clock.now(),
            ),
            err,
            refused,
        },
    )
}

/// `/moves/{id}`: the plan (computed now while the move can still start), actions, progress.
pub async fn show(State(app): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> WebResult {
    operator_only(&ctx)?;
    let id = move_id(&id)?;
    move_page(&app, &ctx, id, Errors::default(), Vec::new(), None).await
}

/// `POST /moves/{id}/{op}`: `run`, `resume`, `pause` or `cancel`.
pub async fn act(
    State(app): State<AppState>,
    Path((id, op)): Path<(String, String)>,
    Posted { ctx, .. }: Posted,
) -> WebResult {
    operator_only(&ctx)?;
    let id = move_id(&id)?;
    let mover = mover(&app)?;
    let (now, actor) = (app.clock.now(), ctx.actor());
    let to = format!("/moves/{id}");
    let result = match op.as_str() {
        "run" | "resume" => match mover.start(id, actor, now).await {
            Ok(Start::Running(_)) => Ok("Running: the steps are queued; progress shows below."),
            Ok(Start::Blocked(plan)) => {
                let lines = blocker_lines(&plan);
                let err = FormError::new(
                    "run",
                    StatusCode::CONFLICT,
                    format!(
                        "Not started: the plan has {} blocker(s). Fix them (or change the move), then run again.",
                        lines.len()
                    ),
                );
                return move_page(&app, &ctx, id, err.into(), lines, Some(plan)).await;
            }
            Err(e) => Err(FormError::from_store("run", e)),
        },
        "pause" => app
            .ledger
            .set_move_state(id, PAUSE_FROM, MoveState::Paused, actor, now)
            .await
            .map(|_| "Paused: the current step finishes, no other starts until you resume.")
            .map_err(|e| FormError::from_store("run", e)),
        "cancel" => app
            .ledger
            .set_move_state(id, CANCEL_FROM, MoveState::Cancelled, actor, now)
            .await
            .map(|_| "Cancelled: no further step will run. What was done stays done.")
            .map_err(|e| FormError::from_store("run", e)),
        _ => return Err(WebError::not_found("page")),
    };
    match result {
        Ok(message) => Ok(ctx.done(&to, message)),
        Err(e) => move_page(&app, &ctx, id, e.into(), Vec::new(), None).await,
    }
}

/// `/moves/{id}/progress`: the live progress fragment htmx polls while the move runs. When the
/// move has stopped running, htmx reloads the page (its actions change with the state).
pub async fn progress(State(app): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> WebResult {
    operator_only(&ctx)?;
    let id = move_id(&id)?;
    let record = app.store.get_move(id).await?;
    let steps = app.store.steps(id).await?;
    let measured = app.store.step_progress(id).await?;
    let view = progress_view(&record, &steps, &measured, app.clock.now());
    let running = view.running;
    let mut response = ctx.page(StatusCode::OK, MoveProgressFragment { progress: view })?;
    if ctx.htmx && !running {
        response
            .headers_mut()
            .insert("hx-refresh", HeaderValue::from_static("true"));
    }
    Ok(response)
}

async fn report_of(app: &AppState, id: Uuid) -> WebResult<serde_json::Value> {
    Ok(tenantry_mover::report::build(app.store.as_ref(), id).await?)
}

/// `/moves/{id}/report`: each step's kind, subject, state, attempts and error.
pub async fn report(State(app): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> WebResult {
    operator_only(&ctx)?;
    let id = move_id(&id)?;
    let record = app.store.get_move(id).await?;
    let report = report_of(&app, id).await?;
    let names = tenant_names(&app).await?;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let rows = report["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| ReportRow {
            kind: text(&r["kind"]),
            subject: text(&r["subject"]),
            state: text(&r["state"]),
            attempts: r["attempts"].as_u64().unwrap_or(0),
            error: text(&r["error"]),
            result: if r["result"].is_null() {
                String::new()
            } else {
                r["result"].to_string()
            },
        })
        .collect();
    let by_state = report["summary"]["byState"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    ctx.page(
        StatusCode::OK,
        MoveReportPage {
            l: Layout::new(&ctx, "Move report", "all-moves", None),
            id: id.to_string(),
            state: record.state.as_str(),
            source: name_of(&names, record.spec.source_tenant_id),
            target: name_of(&names, record.spec.target_tenant_id),
            done: report["summary"]["done"].as_u64().unwrap_or(0),
            steps: report["summary"]["steps"].as_u64().unwrap_or(0),
            by_state,
            rows,
        },
    )
}

fn download(id: Uuid, ext: &str, content_type: &'static str, body: String) -> Response {
    let disposition =
        HeaderValue::from_str(&format!("attachment; filename=\"move-{id}-report.{ext}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

/// `/moves/{id}/report.json`: the API's report, served with the session (no bearer token).
pub async fn report_json(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> WebResult {
    operator_only(&ctx)?;
    let id = move_id(&id)?;
    let report = report_of(&app, id).await?;
    let body = serde_json::to_string_pretty(&report).unwrap_or_default();
    Ok(download(id, "json", "application/json", body))
}

/// `/moves/{id}/report.csv`: one line per step.
pub async fn report_csv(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
) -> WebResult {
    operator_only(&ctx)?;
    let id = move_id(&id)?;
    let report = report_of(&app, id).await?;
    Ok(download(
        id,
        "csv",
        "text/csv; charset=utf-8",
        tenantry_mover::report::to_csv(&report),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_ledger::{SubscriptionId, Timestamp};

    #[test]
    fn source_actions_and_steps_read_plainly() {
        let sub = SubscriptionId::new_random();
        let reduce = SourceAction::Reduce {
            subscription_id: sub,
            sku_part_number: "ENTERPRISEPACK".into(),
            from: 10,
            to: 1,
            removed_now: 4,
            scheduled_at: Some(Timestamp(1_700_000_000)),
            refund_cents: 12_345,
        };
        let row = source_action_row(&reduce);
        assert_eq!(
            row.text,
            "Reduce from 10 to 1 licence(s); 4 removed now; the rest at renewal on 2023-11-14"
        );
        assert_eq!(row.refund, "123.45");
        let cancel = SourceAction::Cancel {
            subscription_id: sub,
            sku_part_number: "SPE_E3".into(),
            immediate: false,
            effective_at: Timestamp(1_700_000_000),
            refund_cents: 0,
        };
        assert!(source_action_row(&cancel)
            .text
            .starts_with("Cancel at the end of the term"));
        let volume = SourceAction::VolumeLicensing {
            subscription_id: sub,
            sku_part_number: "SPE_E3".into(),
            quantity: 50,
        };
        assert!(source_action_row(&volume).volume);
        let buy = Step::BuyTargetLicences {
            sku_id: "6fd2c87f-b296-42f0-b197-1e91e994b900".parse().unwrap(),
            sku_part_number: "ENTERPRISEPACK".into(),
            purchase: TargetPurchase::NewSubscription { quantity: 3 },
        };
        assert_eq!(
            step_text(&buy),
            "Target licences ENTERPRISEPACK: New subscription of 3 licence(s)"
        );
        assert_eq!(
            step_text(&Step::SourceLicences { action: reduce }),
            "Source licences ENTERPRISEPACK: Reduce from 10 to 1 licence(s); 4 removed now; the rest at renewal on 2023-11-14"
        );
    }
}
