//! The pages (askama templates, compiled in) and the small view models they show. Values are
//! formatted here, so templates only print and branch.

use crate::ctx::{Ctx, Errors};
use askama::Template;
use tenantry_ledger::role::{Action, Principal};
use tenantry_ledger::subscription::{Channel, Subscription, REFUND_WINDOW_DAYS};
use tenantry_ledger::tenant::Tenant;
use tenantry_ledger::{TenantId, Timestamp};

/// What the frame of every page needs.
pub struct Layout {
    pub title: String,
    pub csrf: String,
    /// Who is signed in, as shown in the header; `None` on the sign-in and error pages.
    pub who: Option<String>,
    pub operator: bool,
    pub tenant: Option<TenantNav>,
    /// The nav entry to mark as current.
    pub active: &'static str,
    pub flash: Option<String>,
}

pub struct TenantNav {
    pub id: String,
    pub name: String,
    pub audit: bool,
    pub tokens: bool,
}

impl Layout {
    pub fn bare(title: &str) -> Layout {
        Layout {
            title: title.to_string(),
            csrf: String::new(),
            who: None,
            operator: false,
            tenant: None,
            active: "",
            flash: None,
        }
    }

    pub fn new(ctx: &Ctx, title: &str, active: &'static str, tenant: Option<&Tenant>) -> Layout {
        let who = match ctx.principal {
            Principal::Operator => "Platform operator".to_string(),
            Principal::Tenant { role, .. } => match tenant {
                Some(t) => format!("{} · {}", role_label(role.as_str()), t.display_name),
                None => role_label(role.as_str()).to_string(),
            },
        };
        Layout {
            title: title.to_string(),
            csrf: ctx.csrf.clone(),
            who: Some(who),
            operator: ctx.principal.is_operator(),
            tenant: tenant.map(|t| TenantNav {
                id: t.id.to_string(),
                name: t.display_name.clone(),
                audit: ctx.can(t.id, Action::ReadAudit),
                tokens: ctx.can(t.id, Action::ManageTokens),
            }),
            active,
            flash: ctx.take_flash(),
        }
    }
}

pub fn role_label(role: &str) -> &'static str {
    match role {
        "GlobalAdmin" => "Global admin",
        "BillingAdmin" => "Billing admin",
        "LicenseAdmin" => "License admin",
        "UserAdmin" => "User admin",
        "GlobalReader" => "Global reader",
        _ => "Unknown role",
    }
}

/// What the signed-in principal may do in the tenant shown: drives which forms appear. The
/// server checks again on every POST.
#[derive(Debug, Clone, Copy)]
pub struct Can {
    pub billing: bool,
    pub assign: bool,
    pub users: bool,
}

impl Can {
    pub fn new(ctx: &Ctx, tenant: TenantId) -> Can {
        Can {
            billing: ctx.can(tenant, Action::ManageBilling),
            assign: ctx.can(tenant, Action::AssignLicenses),
            users: ctx.can(tenant, Action::ManageUsers),
        }
    }
}

pub fn date(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.0)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!("[year]-[month]-[day]"))
                .ok()
        })
        .unwrap_or_default()
}

pub fn date_time(t: Timestamp) -> String {
    time::OffsetDateTime::from_unix_timestamp(t.0)
        .ok()
        .and_then(|d| {
            d.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_default()
}

pub use tenantry_app::format::money;

pub struct SubRow {
    pub id: String,
    pub part: String,
    pub name: String,
    pub quantity: u32,
    pub status: &'static str,
    pub channel: &'static str,
    pub volume: bool,
    pub trial: bool,
    pub term: &'static str,
    pub billing: &'static str,
    /// "Renews 2027-11-26", "Ends 2027-11-26 (not renewed)", "Disabled since …".
    pub renewal: String,
    pub scheduled: Option<String>,
    pub can_reactivate: bool,
    pub can_cancel: bool,
    pub can_change_seats: bool,
    /// A trial not extended yet (the ledger checks the 15-day window).
    pub can_extend_trial: bool,
    /// Seats still inside their 7-day refund window, and until when.
    pub refundable: Vec<(u32, String)>,
    pub term_end: String,
    /// Product-wide counts, filled in by the page.
    pub assigned: u64,
    pub available: u64,
}

impl SubRow {
    pub fn new(s: &Subscription, part: &str, name: &str, now: Timestamp) -> SubRow {
        use tenantry_ledger::subscription::{BillingCycle, SubscriptionStatus as S, Term};
        let renewal = match s.status {
            S::Active if s.auto_renew => format!("Renews {}", date(s.term_end)),
            S::Active => format!("Ends {} (will not renew)", date(s.term_end)),
            S::Expired => format!(
                "Expired; disabled on {}",
                s.next_lifecycle_at().map(date).unwrap_or_default()
            ),
            S::Disabled => format!(
                "Disabled; deleted on {}",
                s.next_lifecycle_at().map(date).unwrap_or_default()
            ),
            S::Deleted => "Deleted".to_string(),
        };
        let volume = s.channel == Channel::Volume;
        SubRow {
            id: s.id.to_string(),
            part: part.to_string(),
            name: name.to_string(),
            quantity: s.quantity,
            status: s.status.as_str(),
            channel: match s.channel {
                Channel::Direct => "Direct",
                Channel::Partner => "Partner",
                Channel::Volume => "Volume licensing",
            },
            volume,
            trial: s.is_trial,
            term: match s.term {
                Term::Monthly => "Monthly",
                Term::Annual => "Annual",
                Term::ThreeYear => "Three years",
            },
            billing: match s.billing_cycle {
                BillingCycle::Monthly => "billed monthly",
                BillingCycle::PerTerm => "billed per term",
            },
            renewal,
            scheduled: s
                .scheduled_quantity
                .map(|q| format!("Reduces to {q} licences at renewal on {}", date(s.term_end))),
            can_reactivate: !volume
                && (matches!(s.status, S::Expired | S::Disabled)
                    || (s.status == S::Active && !s.auto_renew)),
            can_cancel: !volume && s.status == S::Active && (s.auto_renew || s.is_trial),
            can_change_seats: !volume && s.status == S::Active && !s.is_trial,
            can_extend_trial: s.is_trial && !s.trial_extended && s.status == S::Active,
            refundable: s
                .seat_batches
                .iter()
                .filter(|b| now < b.added_at.plus_days(REFUND_WINDOW_DAYS))
                .map(|b| (b.seats, date(b.added_at.plus_days(REFUND_WINDOW_DAYS))))
                .collect(),
            term_end: date(s.term_end),
            assigned: 0,
            available: 0,
        }
    }
}

pub struct SkuOption {
    pub id: String,
    pub part: String,
    pub name: String,
    pub price: String,
}

/// Per-SKU counts (Graph `subscribedSkus`).
pub struct SkuRow {
    pub id: String,
    pub part: String,
    pub name: String,
    pub total: u64,
    pub assigned: u64,
    pub available: u64,
    pub status: &'static str,
}

pub struct PlanCheck {
    pub id: String,
    pub name: String,
    pub disabled: bool,
}

pub struct UserRow {
    pub id: String,
    pub upn: String,
    pub name: String,
    pub location: String,
    pub enabled: bool,
    pub version: u64,
}

pub struct UserOption {
    pub id: String,
    pub label: String,
}

pub struct HolderRow {
    pub user_id: String,
    pub upn: String,
    pub name: String,
    pub disabled_plans: String,
}

pub struct UserLicence {
    pub sku_id: String,
    pub part: String,
    pub name: String,
    pub plans: Vec<PlanCheck>,
}

pub struct AuditRow {
    pub seq: i64,
    pub at: String,
    /// Who acted, by name.
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// The target's display name, when it has one.
    pub target_name: Option<String>,
    /// The change in one line ("Licences 3 → 5").
    pub summary: String,
    /// Old → new per property, for the detail view.
    pub changes: Vec<(String, String, String)>,
    pub before: Option<String>,
    pub after: Option<String>,
}

pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub domain: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage {
    pub l: Layout,
    pub status: u16,
    pub message: String,
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignInPage {
    pub l: Layout,
    pub error: Option<String>,
    pub notice: Option<String>,
}

#[derive(Template)]
#[template(path = "tenants.html")]
pub struct TenantsPage {
    pub l: Layout,
    pub tenants: Vec<TenantRow>,
    pub err: Errors,
    pub name: String,
    pub domain: String,
}

#[derive(Template)]
#[template(path = "products.html")]
pub struct ProductsPage {
    pub l: Layout,
    pub tid: String,
    pub subs: Vec<SubRow>,
    pub catalog: Vec<SkuOption>,
    pub can: Can,
    pub operator: bool,
    pub err: Errors,
}

#[derive(Template)]
#[template(path = "subscription.html")]
pub struct SubscriptionPage {
    pub l: Layout,
    pub tid: String,
    pub s: SubRow,
    /// Assigned and assignable seats of this product across the tenant's subscriptions.
    pub counts: Option<SkuRow>,
    pub can: Can,
    pub err: Errors,
    pub volume_guidance: &'static str,
    /// Set after the *Transfer licences* action: why it cannot be done.
    pub transfer_refused: Option<&'static str>,
    pub refund_days: i64,
    /// Only the operator plans moves: the transfer refusal links to the move form for them.
    pub operator: bool,
}

#[derive(Template)]
#[template(path = "licenses.html")]
pub struct LicensesPage {
    pub l: Layout,
    pub tid: String,
    pub rows: Vec<SkuRow>,
}

#[derive(Template)]
#[template(path = "license_sku.html")]
pub struct LicenseSkuPage {
    pub l: Layout,
    pub tid: String,
    pub sku: SkuRow,
    pub plans: Vec<PlanCheck>,
    pub holders: Vec<HolderRow>,
    pub candidates: Vec<UserOption>,
    /// Users without a usage location cannot be assigned; they are listed apart.
    pub without_location: usize,
    pub can: Can,
    pub err: Errors,
}

#[derive(Template)]
#[template(path = "users.html")]
pub struct UsersPage {
    pub l: Layout,
    pub tid: String,
    pub q: String,
    /// Each user with the part numbers of the licences they hold.
    pub users: Vec<(UserRow, String)>,
    pub next: Option<i64>,
    pub can: Can,
    pub err: Errors,
    pub form_upn: String,
    pub form_name: String,
    pub form_location: String,
}

#[derive(Template)]
#[template(path = "user.html")]
pub struct UserPage {
    pub l: Layout,
    pub tid: String,
    /// Display name and sign-in name as stored (the form may show what was typed).
    pub stored: (String, String),
    pub u: UserRow,
    pub licences: Vec<UserLicence>,
    pub assignable: Vec<SkuOption>,
    pub can: Can,
    pub err: Errors,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub l: Layout,
    pub tid: String,
    pub action: String,
    pub target: String,
    pub actions: Vec<&'static str>,
    pub records: Vec<AuditRow>,
    pub next: Option<i64>,
}

pub struct MoveRow {
    pub id: String,
    pub state: &'static str,
    pub source: String,
    pub target: String,
    pub path: &'static str,
    pub done: usize,
    pub steps: usize,
    pub created: String,
}

/// Tenant moves: all of them (`tenant` = None) or those of one tenant (id, name).
#[derive(Template)]
#[template(path = "moves.html")]
pub struct MovesPage {
    pub l: Layout,
    pub tenant: Option<(String, String)>,
    pub moves: Vec<MoveRow>,
    pub enabled: bool,
    pub not_enabled: &'static str,
}

pub struct TenantOption {
    pub id: String,
    pub label: String,
}

/// The create form, with what was typed (after a refusal) or the defaults.
#[derive(Template)]
#[template(path = "move_new.html")]
pub struct MoveNewPage {
    pub l: Layout,
    pub tenants: Vec<TenantOption>,
    /// Names of the connection profiles, offered as suggestions.
    pub profiles: Vec<String>,
    pub source: String,
    pub target: String,
    pub keep: bool,
    pub users_csv: String,
    pub rewrite_from: String,
    pub rewrite_to: String,
    pub allow_purchase: bool,
    pub source_mail_url: String,
    pub source_mail_profile: String,
    pub target_mail_url: String,
    pub target_mail_profile: String,
    pub libraries: String,
    pub library_source_profile: String,
    pub library_target_profile: String,
    /// The CalDAV and CardDAV servers' inputs, source and target of each kind.
    pub dav_servers: Vec<DavInput>,
    pub err: Errors,
}

impl MoveNewPage {
    /// Whether any CalDAV/CardDAV input holds something (the optional part then opens).
    pub fn dav_given(&self) -> bool {
        self.dav_servers
            .iter()
            .any(|d| !d.url.is_empty() || !d.profile.is_empty())
    }
}

/// One CalDAV or CardDAV server's inputs on the create form: `{field}_url`, `{field}_profile`.
pub struct DavInput {
    /// `source_caldav`, `target_caldav`, `source_carddav`, `target_carddav`.
    pub field: &'static str,
    pub label: &'static str,
    pub placeholder: &'static str,
    pub url: String,
    pub profile: String,
}

pub struct ProfileRow {
    pub name: String,
    pub kind: String,
    pub username: String,
    pub created: String,
}

#[derive(Template)]
#[template(path = "move_profiles.html")]
pub struct ProfilesPage {
    pub l: Layout,
    pub profiles: Vec<ProfileRow>,
    pub name: String,
    pub webdav: bool,
    pub username: String,
    pub err: Errors,
}

pub struct MoveSummary {
    pub id: String,
    pub state: &'static str,
    pub source_id: String,
    pub source: String,
    pub target_id: String,
    pub target: String,
    pub path: &'static str,
    pub keep: bool,
    pub allow_purchase: bool,
    pub mail: String,
    pub libraries: usize,
    /// The CalDAV/CardDAV servers of each kind the move carries.
    pub calendars_contacts: String,
    pub created: String,
    pub updated: String,
}

pub struct FindingRow {
    pub code: String,
    pub subject: String,
    pub message: String,
}

pub struct PlanUserRow {
    pub source: String,
    pub target: String,
    pub name: String,
    pub location: String,
    pub licences: String,
    pub already_created: bool,
}

pub struct PlanLicenceRow {
    pub part: String,
    pub needed: u32,
    pub already: u32,
    pub free: u32,
    pub to_buy: u32,
    pub purchase: String,
    pub charge: String,
}

pub struct SourceActionRow {
    pub part: String,
    pub subscription: String,
    pub text: String,
    pub refund: String,
    pub volume: bool,
}

pub struct PlanCostRow {
    pub part: String,
    pub seats: u32,
    pub until: String,
    pub overlap: String,
}

/// A plan, formatted (money with 2 decimals, dates), blockers apart from warnings.
pub struct PlanView {
    pub computed: String,
    pub fingerprint: String,
    pub blockers: Vec<FindingRow>,
    pub warnings: Vec<FindingRow>,
    pub users: Vec<PlanUserRow>,
    pub licences: Vec<PlanLicenceRow>,
    pub charge_total: String,
    pub source_actions: Vec<SourceActionRow>,
    pub refund_total: String,
    pub costs: Vec<PlanCostRow>,
    pub overlap_total: String,
    pub steps: Vec<String>,
}

/// Done/steps and the first unfinished step (its state, attempts and last error).
pub struct ProgressView {
    pub id: String,
    pub state: &'static str,
    pub running: bool,
    pub done: usize,
    pub steps: usize,
    pub current_text: String,
    pub current_state: &'static str,
    pub current_attempts: u32,
    pub current_error: Option<String>,
    /// What an administrator must do before the run goes on (Graph tenants): (step key, text).
    pub waiting: Vec<(String, String)>,
    /// Every running step, with a bar once its engine reported counts.
    pub running_steps: Vec<RunningStepBar>,
}

/// One running step on the move page: what it does, who runs it, and how far it is.
pub struct RunningStepBar {
    pub key: String,
    pub text: String,
    pub worker: String,
    /// Done of the total in thousandths, for `<progress max="1000">`; `None` without a total.
    pub permille: Option<u32>,
    pub percent: Option<u32>,
    /// Items, bytes, rate and estimated end (`1,204/2,300 messages · 310 MB/590 MB · …`);
    /// empty before the engine reported.
    pub numbers: String,
}

#[derive(Template)]
#[template(path = "move.html")]
pub struct MovePage {
    pub l: Layout,
    pub m: MoveSummary,
    pub plan: Option<PlanView>,
    /// The plan was computed for this page (the move can still start).
    pub recomputed: bool,
    pub runnable: bool,
    pub can_start: bool,
    /// Paused or failed: the start button says Resume.
    pub resume: bool,
    pub can_pause: bool,
    pub can_cancel: bool,
    pub has_steps: bool,
    pub progress: ProgressView,
    pub err: Errors,
    /// The blockers that refused a run just now.
    pub refused: Vec<String>,
}

/// The live progress alone: what htmx polls.
#[derive(Template)]
#[template(path = "move_progress.html")]
pub struct MoveProgressFragment {
    pub progress: ProgressView,
}

pub struct ReportRow {
    pub kind: String,
    pub subject: String,
    pub state: String,
    pub attempts: u64,
    pub error: String,
    pub result: String,
}

#[derive(Template)]
#[template(path = "move_report.html")]
pub struct MoveReportPage {
    pub l: Layout,
    pub id: String,
    pub state: &'static str,
    pub source: String,
    pub target: String,
    pub done: u64,
    pub steps: u64,
    pub by_state: String,
    pub rows: Vec<ReportRow>,
}

#[derive(Template)]
#[template(path = "tokens.html")]
pub struct TokensPage {
    pub l: Layout,
    pub tid: String,
    pub roles: Vec<(&'static str, &'static str)>,
    pub err: Errors,
    /// A token just issued: shown on this response only.
    pub issued: Option<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tenantry_ledger::catalog::seed_catalog;
    use tenantry_ledger::subscription::{BillingCycle, SubscriptionOrder, Term};
    use tenantry_ledger::SubscriptionId;

    const T0: Timestamp = Timestamp(1_700_000_000);

    fn bought(channel: Channel) -> Subscription {
        let sku = seed_catalog().into_iter().next().unwrap();
        let order = SubscriptionOrder {
            tenant_id: TenantId::new_random(),
            quantity: 3,
            term: Term::Annual,
            billing_cycle: BillingCycle::Monthly,
            channel,
            is_trial: false,
            auto_renew: true,
        };
        Subscription::purchase(SubscriptionId::new_random(), &order, &sku, T0)
            .unwrap()
            .0
    }

    #[test]
    fn amounts_and_dates_read_plainly() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(4_537), "45.37");
        assert_eq!(date(T0), "2023-11-14");
        assert_eq!(date_time(T0), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn a_new_direct_subscription_offers_seat_changes_and_cancel_not_reactivate() {
        let row = SubRow::new(&bought(Channel::Direct), "E", "E", T0);
        assert!(row.can_change_seats && row.can_cancel && !row.can_reactivate);
        assert_eq!(row.refundable, vec![(3, "2023-11-21".to_string())]);
        assert!(
            row.renewal.starts_with("Renews 2024-11-13"),
            "{}",
            row.renewal
        );
    }

    #[test]
    fn a_volume_subscription_offers_nothing_to_change() {
        let row = SubRow::new(&bought(Channel::Volume), "E", "E", T0);
        assert!(row.volume && !row.can_change_seats && !row.can_cancel && !row.can_reactivate);
    }
}
