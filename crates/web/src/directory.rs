//! Licences (per product: counts, holders, assign and unassign) and Users (list, search, create,
//! edit, their licences and disabled service plans).

use crate::account::load_tenant;
use crate::billing::{catalog, counts};
use crate::ctx::{Ctx, Errors, FormData, FormError, Posted, WebError, WebResult};
use crate::views::{
    Can, HolderRow, Layout, LicenseSkuPage, LicensesPage, PlanCheck, SkuOption, SkuRow,
    UserLicence, UserOption, UserPage, UserRow, UsersPage,
};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use std::collections::HashMap;
use tenantry_api::AppState;
use tenantry_app::NewUser;
use tenantry_ledger::assignment::{AddLicense, Assignment};
use tenantry_ledger::role::Action;
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::user::{User, UserPatch};
use tenantry_ledger::{SkuId, UserId};
use tenantry_store::PageRequest;
use uuid::Uuid;

/// The Licences page lists holders by reading each user's licences; beyond this many users the
/// page shows the first ones only (the store has no per-SKU holder query yet).
const MAX_USERS_SCANNED: u32 = 1000;

fn user_row(u: &User) -> UserRow {
    UserRow {
        id: u.id.to_string(),
        upn: u.user_principal_name.clone(),
        name: u.display_name.clone(),
        location: u.usage_location.clone().unwrap_or_default(),
        enabled: u.account_enabled,
        version: u.version,
    }
}

pub async fn licenses(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    let rows = counts(&app, &t).await?;
    ctx.page(
        axum::http::StatusCode::OK,
        LicensesPage {
            l: Layout::new(&ctx, "Licences", "licenses", Some(&t)),
            tid: t.id.to_string(),
            rows,
        },
    )
}

async fn license_sku_page(
    app: &AppState,
    ctx: &Ctx,
    t: &Tenant,
    sku: &str,
    err: Errors,
) -> WebResult {
    let sku_id: SkuId = sku.parse().map_err(|_| WebError::not_found("product"))?;
    let catalog = catalog(app).await?;
    let sku = catalog
        .get(&sku_id)
        .ok_or_else(|| WebError::not_found("product"))?;
    let row = counts(app, t)
        .await?
        .into_iter()
        .find(|c| c.id == sku_id.to_string())
        .unwrap_or(SkuRow {
            id: sku_id.to_string(),
            part: sku.sku_part_number.clone(),
            name: sku.display_name.clone(),
            total: 0,
            assigned: 0,
            available: 0,
            status: "None",
        });
    let users = app
        .store
        .list_users(
            t.id,
            None,
            PageRequest {
                top: MAX_USERS_SCANNED,
                after: None,
            },
        )
        .await?;
    let plan_name: HashMap<Uuid, &str> = sku
        .service_plans
        .iter()
        .map(|p| (p.service_plan_id, p.display_name.as_str()))
        .collect();
    let held: HashMap<UserId, Assignment> = app
        .store
        .tenant_assignments(t.id, Some(sku_id))
        .await?
        .into_iter()
        .map(|a| (a.user_id, a))
        .collect();
    let (mut holders, mut candidates, mut without_location) = (Vec::new(), Vec::new(), 0);
    for u in &users.items {
        match held.get(&u.id) {
            Some(a) => holders.push(HolderRow {
                user_id: u.id.to_string(),
                upn: u.user_principal_name.clone(),
                name: u.display_name.clone(),
                disabled_plans: a
                    .disabled_plans
                    .iter()
                    .map(|p| plan_name.get(p).copied().unwrap_or("unknown plan"))
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
            None if u.usage_location.is_none() => without_location += 1,
            None => candidates.push(UserOption {
                id: u.id.to_string(),
                label: format!("{} ({})", u.display_name, u.user_principal_name),
            }),
        }
    }
    let status = err.status();
    ctx.page(
        status,
        LicenseSkuPage {
            l: Layout::new(ctx, &sku.display_name, "licenses", Some(t)),
            tid: t.id.to_string(),
            sku: row,
            plans: sku
                .service_plans
                .iter()
                .map(|p| PlanCheck {
                    id: p.service_plan_id.to_string(),
                    name: p.display_name.clone(),
                    disabled: false,
                })
                .collect(),
            holders,
            candidates,
            without_location,
            can: Can::new(ctx, t.id),
            err,
        },
    )
}

pub async fn license_sku(
    State(app): State<AppState>,
    ctx: Ctx,
    Path((tenant, sku)): Path<(String, String)>,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    license_sku_page(&app, &ctx, &t, &sku, Errors::default()).await
}

fn disabled_plans(form_name: &'static str, form: &FormData) -> Result<Vec<Uuid>, FormError> {
    form.all("disabled")
        .map(|p| {
            p.parse::<Uuid>()
                .map_err(|_| FormError::invalid(form_name, "Choose service plans from the list."))
        })
        .collect()
}

/// Assigns or unassigns a licence of one SKU for one user; returns a message for the flash.
async fn change_licence(
    app: &AppState,
    ctx: &Ctx,
    t: &Tenant,
    form_name: &'static str,
    user: &str,
    sku: &str,
    // `Some(form)`: assign, with the disabled plans the form lists; `None`: unassign.
    assign: Option<&FormData>,
) -> Result<String, FormError> {
    let user: UserId = user
        .parse()
        .map_err(|_| FormError::invalid(form_name, "Choose a user from the list."))?;
    let sku_id: SkuId = sku
        .parse()
        .map_err(|_| FormError::invalid(form_name, "Choose a product from the list."))?;
    let (add, remove) = if let Some(form) = assign {
        let disabled = disabled_plans(form_name, form)?;
        (
            vec![AddLicense {
                sku_id,
                disabled_plans: disabled,
            }],
            vec![],
        )
    } else {
        (vec![], vec![sku_id])
    };
    let held_before = app
        .store
        .license_details(t.id, user)
        .await
        .map_err(|e| FormError::from_store(form_name, e))?
        .iter()
        .any(|a| a.sku_id == sku_id);
    let (u, _) = app
        .ledger
        .assign_licenses(&ctx.caller(), t.id, user, add, remove, app.clock.now())
        .await
        .map_err(|e| FormError::from_store(form_name, e))?;
    let part = catalog(app)
        .await
        .ok()
        .and_then(|c| c.get(&sku_id).map(|s| s.sku_part_number.clone()))
        .unwrap_or_default();
    Ok(match (assign.is_some(), held_before) {
        (true, true) => format!(
            "Service plans of {part} updated for {}.",
            u.user_principal_name
        ),
        (true, false) => format!("Assigned {part} to {}.", u.user_principal_name),
        (false, _) => format!(
            "Unassigned {part} from {}; the seat is free again.",
            u.user_principal_name
        ),
    })
}

/// `assign` or `unassign`, from a product's licence page.
pub async fn assign_from_sku(
    State(app): State<AppState>,
    Path((tenant, sku, op)): Path<(String, String, String)>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    ctx.authorize(t.id, Action::AssignLicenses)?;
    let assign = match op.as_str() {
        "assign" => true,
        "unassign" => false,
        _ => return Err(WebError::not_found("page")),
    };
    match change_licence(
        &app,
        &ctx,
        &t,
        "assign",
        form.get("user"),
        &sku,
        assign.then_some(&form),
    )
    .await
    {
        Ok(message) => Ok(ctx.done(
            &format!(
                "/tenants/{}/licenses/{}",
                t.id,
                sku.parse::<SkuId>()
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            ),
            message,
        )),
        Err(e) => license_sku_page(&app, &ctx, &t, &sku, e.into()).await,
    }
}

#[derive(serde::Deserialize, Default)]
pub struct UsersQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: Option<String>,
}

async fn users_page(
    app: &AppState,
    ctx: &Ctx,
    t: &Tenant,
    query: UsersQuery,
    err: Errors,
    form: Option<&FormData>,
) -> WebResult {
    let q = query.q.trim().to_string();
    let after = query.after.as_deref().and_then(|a| a.parse::<i64>().ok());
    let page = app
        .store
        .list_users(
            t.id,
            (!q.is_empty()).then(|| q.clone()),
            PageRequest { top: 50, after },
        )
        .await?;
    let field = |name: &str| form.map(|f| f.get(name).to_string()).unwrap_or_default();
    let catalog = catalog(app).await?;
    let mut held: HashMap<UserId, Vec<SkuId>> = HashMap::new();
    for a in app.store.tenant_assignments(t.id, None).await? {
        held.entry(a.user_id).or_default().push(a.sku_id);
    }
    let mut users = Vec::with_capacity(page.items.len());
    for u in &page.items {
        let parts: Vec<&str> = held
            .get(&u.id)
            .into_iter()
            .flatten()
            .filter_map(|sku| catalog.get(sku).map(|s| s.sku_part_number.as_str()))
            .collect();
        users.push((user_row(u), parts.join(", ")));
    }
    let status = err.status();
    ctx.page(
        status,
        UsersPage {
            l: Layout::new(ctx, "Users", "users", Some(t)),
            tid: t.id.to_string(),
            users,
            next: page.next,
            q,
            can: Can::new(ctx, t.id),
            err,
            form_upn: field("upn"),
            form_name: field("name"),
            form_location: field("location"),
        },
    )
}

pub async fn users(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
    query: Result<Query<UsersQuery>, QueryRejection>,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    let query = query.map(|q| q.0).unwrap_or_default();
    users_page(&app, &ctx, &t, query, Errors::default(), None).await
}

pub async fn create_user(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    // Refused before anything else: a 403 page, whatever the page showed.
    ctx.authorize(t.id, Action::ManageUsers)?;
    let result = async {
        let location = form.get("location").trim();
        let user = NewUser {
            user_principal_name: form.get("upn").to_string(),
            display_name: form.get("name").to_string(),
            usage_location: (!location.is_empty()).then(|| location.to_string()),
            account_enabled: form.checked("enabled"),
        };
        app.ledger
            .create_user(&ctx.caller(), t.id, user, app.clock.now())
            .await
            .map_err(|e| FormError::from_store("create", e))
    }
    .await;
    match result {
        Ok(u) => Ok(ctx.done(
            &format!("/tenants/{}/users", t.id),
            format!("Added {} ({}).", u.display_name, u.user_principal_name),
        )),
        Err(e) => users_page(&app, &ctx, &t, UsersQuery::default(), e.into(), Some(&form)).await,
    }
}

/// `typed`: the edit form as submitted, shown instead of the stored values after a refusal.
async fn user_page(
    app: &AppState,
    ctx: &Ctx,
    t: &Tenant,
    id: &str,
    err: Errors,
    typed: Option<&FormData>,
) -> WebResult {
    let id: UserId = id.parse().map_err(|_| WebError::not_found("user"))?;
    let u = app.store.get_user(t.id, id).await?;
    let held = app.store.license_details(t.id, id).await?;
    let catalog = catalog(app).await?;
    let licences = held
        .iter()
        .filter_map(|a| {
            let sku = catalog.get(&a.sku_id)?;
            Some(UserLicence {
                sku_id: sku.sku_id.to_string(),
                part: sku.sku_part_number.clone(),
                name: sku.display_name.clone(),
                plans: sku
                    .service_plans
                    .iter()
                    .map(|p| PlanCheck {
                        id: p.service_plan_id.to_string(),
                        name: p.display_name.clone(),
                        disabled: a.disabled_plans.contains(&p.service_plan_id),
                    })
                    .collect(),
            })
        })
        .collect();
    // Products the tenant has seats of and the user does not hold yet.
    let mut assignable: Vec<SkuOption> = counts(app, t)
        .await?
        .into_iter()
        .filter(|c| c.total > 0 && !held.iter().any(|a| a.sku_id.to_string() == c.id))
        .map(|c| SkuOption {
            id: c.id,
            part: c.part,
            name: c.name,
            price: String::new(),
        })
        .collect();
    assignable.sort_by(|a, b| a.name.cmp(&b.name));
    let status = err.status();
    ctx.page(
        status,
        UserPage {
            l: Layout::new(ctx, &u.display_name, "users", Some(t)),
            tid: t.id.to_string(),
            stored: (u.display_name.clone(), u.user_principal_name.clone()),
            u: match typed {
                Some(f) => UserRow {
                    upn: f.get("upn").to_string(),
                    name: f.get("name").to_string(),
                    location: f.get("location").to_string(),
                    enabled: f.checked("enabled"),
                    ..user_row(&u)
                },
                None => user_row(&u),
            },
            licences,
            assignable,
            can: Can::new(ctx, t.id),
            err,
        },
    )
}

pub async fn user(
    State(app): State<AppState>,
    ctx: Ctx,
    Path((tenant, id)): Path<(String, String)>,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    user_page(&app, &ctx, &t, &id, Errors::default(), None).await
}

pub async fn edit_user(
    State(app): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    // Refused before anything else: a 403 page, whatever the page showed.
    ctx.authorize(t.id, Action::ManageUsers)?;
    let result = async {
        let user: UserId = id
            .parse()
            .map_err(|_| WebError::not_found("user"))
            .map_err(|e| FormError::from_web("edit", e))?;
        let version = form.get("version").parse::<u64>().ok();
        let location = form.get("location").trim();
        let patch = UserPatch {
            user_principal_name: Some(form.get("upn").to_string()),
            display_name: Some(form.get("name").to_string()),
            usage_location: Some((!location.is_empty()).then(|| location.to_string())),
            account_enabled: Some(form.checked("enabled")),
        };
        app.ledger
            .update_user(&ctx.caller(), t.id, user, version, patch, app.clock.now())
            .await
            .map_err(|e| FormError::from_store("edit", e))
    }
    .await;
    match result {
        Ok(u) => Ok(ctx.done(
            &format!("/tenants/{}/users/{}", t.id, u.id),
            format!("Saved {}.", u.user_principal_name),
        )),
        Err(e) => {
            if e.status == axum::http::StatusCode::PRECONDITION_FAILED {
                let e = FormError::new(e.form, e.status, "Someone changed this user meanwhile; the form now shows their version. Apply your change again.");
                user_page(&app, &ctx, &t, &id, e.into(), None).await
            } else {
                // The form keeps what was typed, so the mistake can be fixed in place.
                user_page(&app, &ctx, &t, &id, e.into(), Some(&form)).await
            }
        }
    }
}

pub async fn user_assign(
    State(app): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    ctx.authorize(t.id, Action::AssignLicenses)?;
    let sku = form.get("sku").to_string();
    match change_licence(&app, &ctx, &t, "licences", &id, &sku, Some(&form)).await {
        Ok(message) => Ok(ctx.done(&format!("/tenants/{}/users/{}", t.id, id.trim()), message)),
        Err(e) => user_page(&app, &ctx, &t, &id, e.into(), None).await,
    }
}

pub async fn user_unassign(
    State(app): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    ctx.authorize(t.id, Action::AssignLicenses)?;
    let sku = form.get("sku").to_string();
    match change_licence(&app, &ctx, &t, "licences", &id, &sku, None).await {
        Ok(message) => Ok(ctx.done(&format!("/tenants/{}/users/{}", t.id, id.trim()), message)),
        Err(e) => user_page(&app, &ctx, &t, &id, e.into(), None).await,
    }
}

pub async fn delete_user(
    State(app): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    // Refused before anything else: a 403 page, whatever the page showed.
    ctx.authorize(t.id, Action::ManageUsers)?;
    let result = async {
        if !form.checked("confirm") {
            return Err(FormError::invalid(
                "delete",
                "Tick the box to confirm: deleting a user cannot be undone.",
            ));
        }
        let user: UserId = id
            .parse()
            .map_err(|_| FormError::from_web("delete", WebError::not_found("user")))?;
        let u = app
            .ledger
            .delete_user(&ctx.caller(), t.id, user, app.clock.now())
            .await
            .map_err(|e| FormError::from_store("delete", e))?;
        Ok::<_, FormError>(u.user_principal_name)
    }
    .await;
    match result {
        Ok(upn) => Ok(ctx.done(
            &format!("/tenants/{}/users", t.id),
            format!("Deleted {upn}; their licences are free again."),
        )),
        Err(e) => user_page(&app, &ctx, &t, &id, e.into(), None).await,
    }
}
