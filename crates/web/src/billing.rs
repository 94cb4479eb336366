//! Billing · Your products: subscriptions, buying, adding and removing licences, cancelling,
//! reactivating, and the transfer that is always refused.

use crate::account::load_tenant;
use crate::ctx::{parse_count, Ctx, Errors, FormError, Posted, WebError, WebResult};
use crate::views::{
    date, money, Can, Layout, ProductsPage, SkuOption, SkuRow, SubRow, SubscriptionPage,
};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use std::collections::HashMap;
use tenantry_api::AppState;
use tenantry_app::{orders, ChangeOutcome, Order, SkuRef, SubscriptionChange};
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::role::Action;
use tenantry_ledger::subscription::{SubscriptionStatus, REFUND_WINDOW_DAYS};
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::{guidance, LedgerError, SkuId, SubscriptionId};
use tenantry_store::{PageRequest, StoreError};

pub async fn catalog(app: &AppState) -> WebResult<HashMap<SkuId, Sku>> {
    Ok(app
        .store
        .list_skus()
        .await?
        .into_iter()
        .map(|s| (s.sku_id, s))
        .collect())
}

/// Per-SKU counts: seats that can hold assignments (active and in grace), assigned, free.
pub async fn counts(app: &AppState, tenant: &Tenant) -> WebResult<Vec<SkuRow>> {
    Ok(app
        .store
        .subscribed_skus(tenant.id)
        .await?
        .into_iter()
        .map(|s| {
            let total = s.prepaid_units.enabled + s.prepaid_units.warning;
            SkuRow {
                id: s.sku.sku_id.to_string(),
                part: s.sku.sku_part_number.clone(),
                name: s.sku.display_name.clone(),
                total,
                assigned: s.consumed_units,
                available: total.saturating_sub(s.consumed_units),
                status: s.capability_status,
            }
        })
        .collect())
}

fn names(catalog: &HashMap<SkuId, Sku>, id: SkuId) -> (String, String) {
    catalog.get(&id).map_or_else(
        || (id.to_string(), "Unknown product".to_string()),
        |s| (s.sku_part_number.clone(), s.display_name.clone()),
    )
}

async fn products_page(app: &AppState, ctx: &Ctx, t: &Tenant, err: Errors) -> WebResult {
    let catalog = catalog(app).await?;
    let counts = counts(app, t).await?;
    let now = app.clock.now();
    let subs = app
        .store
        .list_subscriptions(
            t.id,
            PageRequest {
                top: 1000,
                after: None,
            },
        )
        .await?;
    let subs = subs
        .items
        .iter()
        .filter(|s| s.status != SubscriptionStatus::Deleted)
        .map(|s| {
            let (part, name) = names(&catalog, s.sku_id);
            let mut row = SubRow::new(s, &part, &name, now);
            if let Some(c) = counts.iter().find(|c| c.part == part) {
                row.assigned = c.assigned;
                row.available = c.available;
            }
            row
        })
        .collect();
    let mut options: Vec<SkuOption> = catalog
        .values()
        .map(|s| SkuOption {
            id: s.sku_id.to_string(),
            part: s.sku_part_number.clone(),
            name: s.display_name.clone(),
            price: money(s.monthly_price_cents),
        })
        .collect();
    options.sort_by(|a, b| a.name.cmp(&b.name));
    let status = err.status();
    ctx.page(
        status,
        ProductsPage {
            l: Layout::new(ctx, "Your products", "products", Some(t)),
            tid: t.id.to_string(),
            subs,
            catalog: options,
            can: Can::new(ctx, t.id),
            operator: ctx.principal.is_operator(),
            err,
        },
    )
}

pub async fn products(
    State(app): State<AppState>,
    ctx: Ctx,
    Path(tenant): Path<String>,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    products_page(&app, &ctx, &t, Errors::default()).await
}

pub async fn buy(
    State(app): State<AppState>,
    Path(tenant): Path<String>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    // Refused before anything else: a 403 page, whatever the page showed.
    ctx.authorize(t.id, Action::ManageBilling)?;
    let result = async {
        let sku: SkuId = form
            .get("sku")
            .parse()
            .map_err(|_| FormError::invalid("buy", "Choose a product from the list."))?;
        let quantity = parse_count("buy", form.get("quantity"), "number of licences")?;
        // Choices the form leaves out (or does not know) take the application layer's defaults.
        let order = Order {
            term: orders::parse_term(form.get("term")),
            billing_cycle: orders::parse_billing_cycle(form.get("billing")),
            channel: orders::parse_channel(form.get("channel")),
            is_trial: form.checked("trial"),
            ..Order::new(t.id, SkuRef::Id(sku), quantity)
        };
        let (sub, m) = app
            .ledger
            .buy(&ctx.caller(), order, app.clock.now())
            .await
            .map_err(|e| FormError::from_store("buy", e))?;
        Ok::<_, FormError>(format!(
            "Bought {} licence(s); charged {} now (prorated to the next billing date).",
            sub.quantity,
            money(m.charged_cents)
        ))
    }
    .await;
    match result {
        Ok(message) => Ok(ctx.done(&format!("/tenants/{}/products", t.id), message)),
        Err(e) => products_page(&app, &ctx, &t, e.into()).await,
    }
}

async fn subscription_page(
    app: &AppState,
    ctx: &Ctx,
    t: &Tenant,
    id: &str,
    err: Errors,
    transfer_refused: Option<LedgerError>,
) -> WebResult {
    let id: SubscriptionId = id
        .parse()
        .map_err(|_| WebError::not_found("subscription"))?;
    let sub = app.store.get_subscription(t.id, id).await?;
    let catalog = catalog(app).await?;
    let (part, name) = names(&catalog, sub.sku_id);
    let counts = counts(app, t).await?.into_iter().find(|c| c.part == part);
    let status = match &transfer_refused {
        Some(e) => crate::ctx::status_of(e.kind),
        None => err.status(),
    };
    ctx.page(
        status,
        SubscriptionPage {
            l: Layout::new(ctx, &name, "products", Some(t)),
            tid: t.id.to_string(),
            s: SubRow::new(&sub, &part, &name, app.clock.now()),
            counts,
            can: Can::new(ctx, t.id),
            err,
            volume_guidance: guidance::VOLUME_READ_ONLY,
            transfer_refused: transfer_refused.map(|_| guidance::TRANSFER_REFUSED),
            refund_days: REFUND_WINDOW_DAYS,
            operator: ctx.principal.is_operator(),
        },
    )
}

pub async fn subscription(
    State(app): State<AppState>,
    ctx: Ctx,
    Path((tenant, id)): Path<(String, String)>,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    subscription_page(&app, &ctx, &t, &id, Errors::default(), None).await
}

/// `add`, `remove`, `cancel`, `reactivate`, `extendTrial` or `transfer`.
pub async fn change(
    State(app): State<AppState>,
    Path((tenant, id, op)): Path<(String, String, String)>,
    Posted { ctx, form }: Posted,
) -> WebResult {
    let t = load_tenant(&app, &ctx, &tenant).await?;
    let sub_id: SubscriptionId = id
        .parse()
        .map_err(|_| WebError::not_found("subscription"))?;
    let sub = app.store.get_subscription(t.id, sub_id).await?;
    if op == "transfer" {
        // Anyone who can read the subscription may ask; the answer is always the same refusal.
        let refusal = match app
            .ledger
            .transfer_subscription(&ctx.caller(), t.id, sub_id)
            .await
        {
            Err(StoreError::Ledger(refusal)) => refusal,
            Err(e) => return Err(e.into()),
            Ok(never) => match never {},
        };
        return subscription_page(&app, &ctx, &t, &id, Errors::default(), Some(refusal)).await;
    }
    let form_name: &'static str = match op.as_str() {
        "add" => "add",
        "remove" => "remove",
        "cancel" | "reactivate" | "extendTrial" => "lifecycle",
        _ => return Err(WebError::not_found("page")),
    };
    // Refused before anything else: a 403 page, whatever the page showed.
    ctx.authorize(t.id, Action::ManageBilling)?;
    let result = async {
        let change = match op.as_str() {
            "add" => {
                let n = parse_count(form_name, form.get("count"), "number of licences to add")?;
                SubscriptionChange::SetQuantity(sub.quantity.saturating_add(n))
            }
            "remove" => {
                let n = parse_count(form_name, form.get("count"), "number of licences to remove")?;
                if n >= sub.quantity {
                    return Err(FormError::invalid(
                        form_name,
                        format!(
                            "This subscription has {} licence(s); it keeps at least one. To stop paying for all of them, cancel the subscription instead.",
                            sub.quantity
                        ),
                    ));
                }
                SubscriptionChange::SetQuantity(sub.quantity - n)
            }
            "cancel" => SubscriptionChange::Cancel,
            "extendTrial" => SubscriptionChange::ExtendTrial,
            _ => SubscriptionChange::Reactivate,
        };
        let (after, outcome) = app
            .ledger
            .change_subscription(&ctx.caller(), t.id, sub.id, Some(sub.version), change, app.clock.now())
            .await
            .map_err(|e| FormError::from_store(form_name, e))?;
        Ok::<_, FormError>(describe(&outcome, after.quantity))
    }
    .await;
    match result {
        Ok(message) => Ok(ctx.done(&format!("/tenants/{}/products/{}", t.id, sub.id), message)),
        Err(e) => {
            let e = if e.status == StatusCode::PRECONDITION_FAILED {
                FormError::new(
                    e.form,
                    e.status,
                    "This subscription changed meanwhile; check the figures below and try again.",
                )
            } else {
                e
            };
            subscription_page(&app, &ctx, &t, &id, e.into(), None).await
        }
    }
}

fn describe(outcome: &ChangeOutcome, quantity: u32) -> String {
    match outcome {
        ChangeOutcome::Seats(c) if c.seats_added > 0 => format!(
            "Added {} licence(s): {quantity} in total; charged {} (prorated).",
            c.seats_added,
            money(c.money.charged_cents)
        ),
        ChangeOutcome::Seats(c) => {
            let mut text = format!(
                "Removed {} licence(s) now, refunded {}; {quantity} in total.",
                c.seats_removed_now,
                money(c.money.refunded_cents)
            );
            if let (Some(q), Some(at)) = (c.scheduled_quantity, c.effective_at) {
                text.push_str(&format!(
                    " Licences older than the 7-day refund window go at renewal: {q} from {}.",
                    date(at)
                ));
            }
            text
        }
        ChangeOutcome::Cancelled(c) if c.immediate => format!(
            "Cancelled: the subscription is disabled now; refunded {}.",
            money(c.money.refunded_cents)
        ),
        ChangeOutcome::Cancelled(c) => format!(
            "Recurring billing stopped: the subscription ends on {} and will not renew.",
            date(c.effective_at)
        ),
        ChangeOutcome::Reactivated(m) => format!(
            "Reactivated: recurring billing is on; charged {}.",
            money(m.charged_cents)
        ),
        ChangeOutcome::TrialExtended => "Trial extended by 30 days.".to_string(),
    }
}
