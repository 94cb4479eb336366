//! Tenant moves (operator): connection profiles, create, plan, run, pause, resume, cancel, report.

use super::list;
use crate::auth::Operator;
use crate::clock::rfc3339;
use crate::dto::{
    List, MeasuredStepDto, MoveProgressDto, MoveStatusDto, RunningStepDto, StepProgressDto,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_id, ApiJson, Paging};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tenantry_ledger::{LedgerError, TenantId};
use tenantry_mover::control::{blocker_lines, Start, CANCEL_FROM, PAUSE_FROM};
use tenantry_mover::gather::Mover;
use tenantry_mover::graph_profile::GraphProfile;
use tenantry_moves::model::{
    is_exchange, is_graph_library, parse_user_csv, DavServer, DomainRewrite, LibraryMapping,
    MailServer, MovePath, MoveSpec, PimServers, UserMapping,
};
use tenantry_store::moves::{MoveRecord, MoveState, ProfileKind, StepRecord, StepState};
use utoipa::ToSchema;
use uuid::Uuid;

fn mover(app: &AppState) -> ApiResult<&Arc<Mover>> {
    app.mover.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "MovesUnavailable",
            "tenant moves are not enabled on this server",
        )
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateProfile {
    pub name: String,
    /// `imap`, `webdav` or `graph`.
    pub kind: String,
    /// imap and webdav: the login.
    #[serde(default)]
    pub username: String,
    /// imap and webdav. Stored encrypted; never returned.
    #[serde(default)]
    pub password: String,
    /// graph: the directory (tenant) id.
    pub tenant_id: Option<String>,
    /// graph: the app registration's application (client) id.
    pub client_id: Option<String>,
    /// graph: the app's client secret, or give `clientCertificate`. Stored encrypted; never returned.
    pub client_secret: Option<String>,
    /// graph: instead of a secret, a PEM text holding the app's certificate and its unencrypted
    /// RSA private key (PKCS#8 or PKCS#1). Stored encrypted; never returned.
    pub client_certificate: Option<String>,
    /// graph: default `https://login.microsoftonline.com`.
    pub authority: Option<String>,
    /// graph: default `https://graph.microsoft.com`.
    pub graph_url: Option<String>,
}

fn profile_json(p: &tenantry_store::moves::ProfileRecord) -> Value {
    json!({"id": p.id, "name": p.name, "kind": p.kind.as_str(), "username": p.username, "createdDateTime": rfc3339(p.created_at)})
}

/// Stores credentials for a mail server or a library, encrypted at rest. The password is never returned.
#[utoipa::path(post, path = "/v1/connectionProfiles", tag = "moves", request_body = CreateProfile,
    responses((status = 201, description = "the profile, without its secret"), (status = 409), (status = 422)))]
pub async fn create_profile(
    State(app): State<AppState>,
    _auth: Operator,
    ApiJson(body): ApiJson<CreateProfile>,
) -> ApiResult<Response> {
    let profile = if body.kind == "graph" {
        let graph = GraphProfile::new(
            body.tenant_id.as_deref().unwrap_or(""),
            body.client_id.as_deref().unwrap_or(""),
            body.client_secret.as_deref(),
            body.client_certificate.as_deref(),
            body.authority.as_deref(),
            body.graph_url.as_deref(),
        )?;
        mover(&app)?
            .create_graph_profile(&body.name, &graph, app.clock.now())
            .await?
    } else {
        mover(&app)?
            .create_profile(
                &body.name,
                &body.kind,
                &body.username,
                &body.password,
                app.clock.now(),
            )
            .await?
    };
    Ok((StatusCode::CREATED, Json(profile_json(&profile))).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateProfile {
    /// imap and webdav: the login.
    pub username: Option<String>,
    /// imap and webdav: stored encrypted; never returned.
    pub password: Option<String>,
    /// graph: a new client secret (stored encrypted; never returned).
    pub client_secret: Option<String>,
    /// graph: instead of a secret, a PEM with the app's certificate and its unencrypted RSA
    /// private key (stored encrypted; never returned).
    pub client_certificate: Option<String>,
}

/// Replaces a profile's credential, e.g. after a server refused it or a client secret expired
/// (a failed move then resumes with the new one): an imap or webdav profile's username and
/// password, a graph profile's clientSecret or clientCertificate. The name, kind, tenant and
/// app stay; secrets are never returned.
#[utoipa::path(put, path = "/v1/connectionProfiles/{name}", tag = "moves", params(("name" = String, Path)),
    request_body = UpdateProfile,
    responses((status = 200, description = "the profile, without its secret"), (status = 404), (status = 422)))]
pub async fn update_profile(
    State(app): State<AppState>,
    _auth: Operator,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<UpdateProfile>,
) -> ApiResult<Json<Value>> {
    let mover = mover(&app)?;
    let profile = if body.client_secret.is_some() || body.client_certificate.is_some() {
        if body.username.is_some() || body.password.is_some() {
            return Err(ApiError::unprocessable(
                "InvalidProfile",
                "give username and password (imap, webdav) or clientSecret or clientCertificate (graph), not both",
            ));
        }
        mover
            .update_graph_credential(
                &name,
                body.client_secret.as_deref(),
                body.client_certificate.as_deref(),
            )
            .await?
    } else {
        mover
            .update_profile(
                &name,
                body.username.as_deref().unwrap_or(""),
                body.password.as_deref().unwrap_or(""),
            )
            .await?
    };
    Ok(Json(profile_json(&profile)))
}

#[utoipa::path(get, path = "/v1/connectionProfiles", tag = "moves", responses((status = 200, description = "profiles, without secrets")))]
pub async fn list_profiles(State(app): State<AppState>, _auth: Operator) -> ApiResult<Json<Value>> {
    let profiles = app.store.list_profiles().await?;
    Ok(Json(
        json!({"value": profiles.iter().map(profile_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateMove {
    /// Required unless `sourceGraph` names the source's profile.
    pub source_tenant_id: Option<Uuid>,
    pub target_tenant_id: Option<Uuid>,
    /// A connection profile of kind `graph`: the source is reached through Microsoft Graph
    /// (its tenant id is the profile's).
    pub source_graph: Option<String>,
    pub target_graph: Option<String>,
    /// `retire-source` or `keep-source`.
    #[schema(value_type = String)]
    pub path: MovePath,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub users: Vec<UserMapping>,
    /// The same mapping as CSV text: `sourceUpn,targetUpn` per line.
    pub users_csv: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub domain_rewrite: Option<DomainRewrite>,
    #[serde(default = "yes")]
    pub allow_purchase: bool,
    #[schema(value_type = Option<Object>)]
    pub source_mail: Option<MailServer>,
    #[schema(value_type = Option<Object>)]
    pub target_mail: Option<MailServer>,
    /// Document libraries: `{"source", "target", "sourceProfile", "targetProfile"}`, each a
    /// path, `webdav(s)://host/path`, `sharepoint://{host}/sites/{site}/{library}/…` or
    /// `onedrive://{userPrincipalName}/…`. `onedrive://{user}/…` as both source and target
    /// (the literal placeholder `{user}`) moves each moving user's OneDrive: one step per user,
    /// source UPN to target UPN (after the domain rewrite), once the target user is licensed.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub libraries: Vec<LibraryMapping>,
    /// A CalDAV server of the source: `{"url": "caldavs://host[:port]/[context/]", "profile":
    /// "<webdav profile>"}`. With `targetCaldav`, each moving user's calendars and task lists
    /// move home to home (homes found by RFC 6764 discovery).
    #[schema(value_type = Option<Object>)]
    pub source_caldav: Option<DavServer>,
    #[schema(value_type = Option<Object>)]
    pub target_caldav: Option<DavServer>,
    /// A CardDAV server of the source (`carddavs://…`); with `targetCarddav`, address books move.
    #[schema(value_type = Option<Object>)]
    pub source_carddav: Option<DavServer>,
    #[schema(value_type = Option<Object>)]
    pub target_carddav: Option<DavServer>,
}

fn yes() -> bool {
    true
}

async fn move_json(app: &AppState, record: &MoveRecord) -> ApiResult<Value> {
    let steps = app.store.steps(record.id).await?;
    let measured = app.store.step_progress(record.id).await?;
    // A step's items and bytes done of the total, with the rate and the estimated end while
    // it runs (computed by the application layer, the same for every surface).
    let by_key: std::collections::HashMap<&str, _> =
        measured.iter().map(|p| (p.key.as_str(), p)).collect();
    let progress_of = |s: &StepRecord| {
        by_key
            .get(s.key.as_str())
            .map(|p| StepProgressDto::from(tenantry_app::progress::view(p, s.state)))
    };
    let current = steps.iter().find(|s| s.state != StepState::Done);
    let progress = MoveProgressDto {
        steps: steps.len(),
        done: steps.iter().filter(|s| s.state == StepState::Done).count(),
        current: current.map(|s| json!({"key": s.key, "state": s.state.as_str(), "attempts": s.attempts, "error": s.error})),
        // Steps run many at once: each running one with the worker holding it, and since when.
        running: steps
            .iter()
            .filter(|s| s.state == StepState::Running)
            .map(|s| RunningStepDto {
                key: s.key.clone(),
                worker: s.lease_owner.clone(),
                started_date_time: s.claimed_at.map(rfc3339),
                lease_until: s.lease_until.map(rfc3339),
                attempts: s.attempts,
                progress: progress_of(s),
            })
            .collect(),
        by_step: steps
            .iter()
            .filter_map(|s| {
                Some(MeasuredStepDto {
                    key: s.key.clone(),
                    state: s.state.as_str().into(),
                    progress: progress_of(s)?,
                })
            })
            .collect(),
    };
    let status = MoveStatusDto {
        id: record.id,
        state: record.state.as_str().into(),
        progress,
    };
    let mut answer = serde_json::to_value(status).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?;
    let more = json!({
        "spec": record.spec,
        "createdDateTime": rfc3339(record.created_at),
        "lastModifiedDateTime": rfc3339(record.updated_at),
        "planFingerprint": record.fingerprint,
        // Steps only an administrator can complete (Graph tenants): shown first by every client.
        "waitingForAdministrator": steps
            .iter()
            .filter(|s| s.state != StepState::Done)
            .filter_map(|s| {
                let waiting = s.result.as_ref()?.get(tenantry_app::waiting::WAITING)?;
                Some(json!({"key": s.key, "action": waiting}))
            })
            .collect::<Vec<_>>(),
    });
    if let (Value::Object(answer), Value::Object(more)) = (&mut answer, more) {
        answer.extend(more);
    }
    Ok(answer)
}

/// The tenant of one side: given by id, or the tenant of its `graph` profile (not both).
async fn side_tenant(
    app: &AppState,
    side: &str,
    id: Option<Uuid>,
    graph: &Option<String>,
) -> ApiResult<TenantId> {
    match (id, graph) {
        (Some(id), None) => Ok(TenantId(id)),
        (None, Some(profile)) => {
            let profile = mover(app)?.graph_profile(profile).await?;
            Ok(tenantry_mover::ports::graph_tenant_id(&profile)?)
        }
        (Some(_), Some(_)) => Err(LedgerError::invalid(
            "InvalidMoveSpec",
            format!("give either {side}TenantId or {side}Graph, not both"),
        )
        .into()),
        (None, None) => Err(LedgerError::invalid(
            "InvalidMoveSpec",
            format!("{side}TenantId (a tenant of this server) or {side}Graph (a graph connection profile) is required"),
        )
        .into()),
    }
}

/// Each named profile that exists is of the kind its place needs: `graph` for SharePoint,
/// OneDrive and Exchange, another kind for IMAP and WebDAV (a graph profile's sealed app would
/// otherwise be sent as a password). A profile not created yet is the plan's to report.
async fn check_profile_kinds(app: &AppState, spec: &MoveSpec) -> ApiResult<()> {
    let mut uses: Vec<(&str, bool, &str)> = Vec::new();
    for (side, server) in [("source", &spec.source_mail), ("target", &spec.target_mail)] {
        if let Some(server) = server {
            uses.push((&server.profile, is_exchange(&server.url), side));
        }
    }
    for library in &spec.libraries {
        for (side, location, profile) in [
            ("source", &library.source, &library.source_profile),
            ("target", &library.target, &library.target_profile),
        ] {
            if let Some(profile) = profile {
                uses.push((profile, is_graph_library(location), side));
            }
        }
    }
    for (name, needs_graph, side) in uses {
        let record = match app.store.get_profile(name.to_string()).await {
            Ok(record) => record,
            Err(tenantry_store::StoreError::Ledger(e)) if e.code == "NotFound" => continue,
            Err(e) => return Err(e.into()),
        };
        if (record.kind == ProfileKind::Graph) != needs_graph {
            let wanted = if needs_graph {
                "graph (SharePoint, OneDrive and Exchange are reached through Microsoft Graph)"
            } else {
                "imap or webdav"
            };
            return Err(LedgerError::invalid(
                "InvalidProfileKind",
                format!(
                    "the {side} profile {name} is of kind {}; this place needs a profile of kind {wanted}",
                    record.kind.as_str()
                ),
            )
            .into());
        }
    }
    Ok(())
}

#[utoipa::path(post, path = "/v1/moves", tag = "moves", request_body = CreateMove,
    responses((status = 201, description = "the move (Draft)"), (status = 403), (status = 404), (status = 422)))]
pub async fn create(
    State(app): State<AppState>,
    auth: Operator,
    ApiJson(body): ApiJson<CreateMove>,
) -> ApiResult<Response> {
    mover(&app)?;
    let mut users = body.users;
    if let Some(csv) = &body.users_csv {
        users.extend(parse_user_csv(csv)?);
    }
    let source_tenant_id =
        side_tenant(&app, "source", body.source_tenant_id, &body.source_graph).await?;
    let target_tenant_id =
        side_tenant(&app, "target", body.target_tenant_id, &body.target_graph).await?;
    let spec = MoveSpec {
        source_tenant_id,
        target_tenant_id,
        source_graph: body.source_graph,
        target_graph: body.target_graph,
        path: body.path,
        users,
        domain_rewrite: body.domain_rewrite,
        allow_purchase: body.allow_purchase,
        source_mail: body.source_mail,
        target_mail: body.target_mail,
        libraries: body.libraries,
        pim: Box::new(PimServers {
            source_caldav: body.source_caldav,
            target_caldav: body.target_caldav,
            source_carddav: body.source_carddav,
            target_carddav: body.target_carddav,
        }),
    }
    .with_graph_defaults();
    spec.validate()?;
    check_profile_kinds(&app, &spec).await?;
    let record = app
        .ledger
        .create_move(spec, auth.actor(), app.clock.now())
        .await?;
    Ok((StatusCode::CREATED, Json(move_json(&app, &record).await?)).into_response())
}

#[utoipa::path(get, path = "/v1/moves", tag = "moves", responses((status = 200, description = "moves")))]
pub async fn list_all(
    State(app): State<AppState>,
    _auth: Operator,
    Paging(page): Paging,
) -> ApiResult<Json<List<Value>>> {
    let moves = app.store.list_moves(page).await?;
    let mut out = list(moves, "/v1/moves", page.top, "", |m| m);
    let mut value = Vec::new();
    for m in std::mem::take(&mut out.value) {
        value.push(move_json(&app, &m).await?);
    }
    Ok(Json(List {
        value,
        next_link: out.next_link,
    }))
}

fn move_id(raw: &str) -> ApiResult<Uuid> {
    parse_id(raw, "move")
}

#[utoipa::path(get, path = "/v1/moves/{id}", tag = "moves", params(("id" = String, Path)), responses((status = 200, body = MoveStatusDto, description = "the move, with every running step's progress"), (status = 404)))]
pub async fn get(
    State(app): State<AppState>,
    _auth: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = app.store.get_move(move_id(&id)?).await?;
    Ok(Json(move_json(&app, &record).await?))
}

/// Computes the plan as things are now: seats the target needs, purchases, the source's
/// cancellation or reduction, costs, findings (blockers first) and the ordered steps.
#[utoipa::path(get, path = "/v1/moves/{id}/plan", tag = "moves", params(("id" = String, Path)), responses((status = 200), (status = 404)))]
pub async fn plan(
    State(app): State<AppState>,
    _auth: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let plan = mover(&app)?
        .current_plan(move_id(&id)?, app.clock.now())
        .await?;
    let mut value = serde_json::to_value(&plan).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        )
    })?;
    value["runnable"] = json!(plan.is_runnable());
    Ok(Json(value))
}

/// Re-plans, refuses a plan with blockers, then starts (or resumes) the run as durable steps.
#[utoipa::path(post, path = "/v1/moves/{id}/run", tag = "moves", params(("id" = String, Path)),
    responses((status = 202, description = "running"), (status = 409, description = "MoveHasBlockers, or not runnable in its state")))]
pub async fn run(
    State(app): State<AppState>,
    auth: Operator,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id = move_id(&id)?;
    match mover(&app)?
        .start(id, auth.actor(), app.clock.now())
        .await?
    {
        Start::Running(record) => {
            Ok((StatusCode::ACCEPTED, Json(move_json(&app, &record).await?)).into_response())
        }
        Start::Blocked(plan) => {
            let list = blocker_lines(&plan);
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "MoveHasBlockers",
                format!(
                    "the plan has {} blocker(s): {}",
                    list.len(),
                    list.join("; ")
                ),
            ))
        }
    }
}

async fn transition(
    app: &AppState,
    auth: &Operator,
    id: &str,
    from: &'static [MoveState],
    to: MoveState,
) -> ApiResult<Json<Value>> {
    let record = app
        .ledger
        .set_move_state(move_id(id)?, from, to, auth.actor(), app.clock.now())
        .await?;
    Ok(Json(move_json(app, &record).await?))
}

#[utoipa::path(post, path = "/v1/moves/{id}/pause", tag = "moves", params(("id" = String, Path)), responses((status = 200), (status = 409)))]
pub async fn pause(
    State(app): State<AppState>,
    auth: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    transition(&app, &auth, &id, PAUSE_FROM, MoveState::Paused).await
}

#[utoipa::path(post, path = "/v1/moves/{id}/resume", tag = "moves", params(("id" = String, Path)), responses((status = 202), (status = 409)))]
pub async fn resume(
    State(app): State<AppState>,
    auth: Operator,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    run(State(app), auth, Path(id)).await
}

/// Records that an administrator did what a waiting step asks (bought the seats, changed the
/// source subscription): the step finishes with who confirmed it and when.
#[utoipa::path(post, path = "/v1/moves/{id}/steps/{key}/confirm", tag = "moves",
    params(("id" = String, Path), ("key" = String, Path)),
    responses((status = 200, description = "the confirmation"), (status = 404), (status = 409, description = "StepNotWaiting")))]
pub async fn confirm_step(
    State(app): State<AppState>,
    auth: Operator,
    Path((id, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let confirmed = app
        .ledger
        .confirm_step(move_id(&id)?, key, auth.actor(), app.clock.now())
        .await?;
    Ok(Json(confirmed))
}

#[utoipa::path(post, path = "/v1/moves/{id}/cancel", tag = "moves", params(("id" = String, Path)), responses((status = 200), (status = 409)))]
pub async fn cancel(
    State(app): State<AppState>,
    auth: Operator,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    transition(&app, &auth, &id, CANCEL_FROM, MoveState::Cancelled).await
}

#[derive(Deserialize)]
pub struct ReportQuery {
    format: Option<String>,
}

/// The report: licence changes on both sides and each step's state, counts and errors.
#[utoipa::path(get, path = "/v1/moves/{id}/report", tag = "moves", params(("id" = String, Path), ("format" = Option<String>, Query, description = "json (default) or csv")),
    responses((status = 200), (status = 404)))]
pub async fn report(
    State(app): State<AppState>,
    _auth: Operator,
    Path(id): Path<String>,
    Query(q): Query<ReportQuery>,
) -> ApiResult<Response> {
    let report = tenantry_mover::report::build(app.store.as_ref(), move_id(&id)?).await?;
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(report).into_response()),
        Some("csv") => Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            tenantry_mover::report::to_csv(&report),
        )
            .into_response()),
        Some(_) => Err(ApiError::bad_request(
            "InvalidFormat",
            "format must be json or csv",
        )),
    }
}
