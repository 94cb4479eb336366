//! The planner: from a snapshot of both tenants (and what probing the servers found) to an
//! ordered plan. Pure and deterministic: the same inputs always give the same plan and the same
//! fingerprint, so a plan can be checked for staleness before it runs.
//!
//! Money figures come from running the ledger's own rules on copies of the subscriptions, so the
//! plan shows exactly what the run will be charged or refunded if nothing changes meanwhile.

use crate::model::{MovePath, MoveSpec, PimKind};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tenantry_ledger::assignment::Assignment;
use tenantry_ledger::catalog::Sku;
use tenantry_ledger::money::prorate_cents;
use tenantry_ledger::subscription::{
    BillingCycle, Channel, Subscription, SubscriptionOrder, SubscriptionStatus, Term,
};
use tenantry_ledger::user::{validate_upn, User};
use tenantry_ledger::{SkuId, SubscriptionId, TenantId, Timestamp};

/// One tenant as the planner needs to see it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantSnapshot {
    pub tenant_id: TenantId,
    pub subscriptions: Vec<Subscription>,
    pub users: Vec<UserLicences>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserLicences {
    pub user: User,
    pub licences: Vec<Assignment>,
}

/// What probing the servers found, gathered before planning (I/O happens outside).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Probes {
    /// (side, user, problem) for every mailbox login that failed or server that did not answer.
    pub mail_failures: Vec<ProbeFailure>,
    /// (side, library, problem) for every library endpoint that could not be listed.
    pub library_failures: Vec<ProbeFailure>,
    /// Names or paths in a source library that the target would refuse.
    pub refused_names: Vec<RefusedName>,
    /// (side, server, problem) for every CalDAV/CardDAV server that did not answer or refused
    /// the profile's login. Absent from older plans (and left out when empty, so fingerprints of
    /// moves without such servers stay as they were).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dav_failures: Vec<ProbeFailure>,
    /// (kind, user, what it means) for every moving user without a calendar or address-book
    /// home on the source: nothing of that kind moves for them (a warning, so that a server
    /// naming principals otherwise than by UPN shows before the run, not after it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dav_homes_missing: Vec<ProbeFailure>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeFailure {
    pub side: String,
    pub subject: String,
    pub problem: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusedName {
    pub library: String,
    pub path: String,
    pub problem: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Severity {
    Blocker,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    pub code: String,
    pub subject: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MovedUser {
    pub source_upn: String,
    pub target_upn: String,
    pub display_name: String,
    pub usage_location: Option<String>,
    /// Licences to give in the target: the source's SKUs with the same disabled plans.
    pub licences: Vec<PlannedLicence>,
    /// The target user already exists because this move created it earlier.
    pub already_created: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedLicence {
    pub sku_id: SkuId,
    pub sku_part_number: String,
    pub disabled_plans: Vec<uuid::Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "kind"
)]
pub enum TargetPurchase {
    /// Enough free seats already.
    None,
    AddSeats {
        subscription_id: SubscriptionId,
        from: u32,
        to: u32,
    },
    NewSubscription {
        quantity: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LicenceLine {
    pub sku_id: SkuId,
    pub sku_part_number: String,
    /// Seats the moved users hold in the source.
    pub seats_needed: u32,
    /// Of those, already assigned in the target by this move.
    pub already_assigned: u32,
    pub target_free: u32,
    pub seats_to_buy: u32,
    pub purchase: TargetPurchase,
    /// Prorated charge of the purchase now.
    pub charge_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "kind"
)]
pub enum SourceAction {
    /// Cancel: immediate with a refund inside the 7-day window, otherwise at the end of term.
    Cancel {
        subscription_id: SubscriptionId,
        sku_part_number: String,
        immediate: bool,
        effective_at: Timestamp,
        refund_cents: u64,
    },
    /// Reduce to the seats still in use: now where the refund window allows, else at renewal.
    Reduce {
        subscription_id: SubscriptionId,
        sku_part_number: String,
        from: u32,
        to: u32,
        removed_now: u32,
        scheduled_at: Option<Timestamp>,
        refund_cents: u64,
    },
    /// Volume licensing: nothing to do here; the agreement is changed in the VLSC.
    VolumeLicensing {
        subscription_id: SubscriptionId,
        sku_part_number: String,
        quantity: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CostLine {
    pub sku_part_number: String,
    pub seats_moved: u32,
    /// Until when the source still pays for the moved seats.
    pub source_pays_until: Timestamp,
    /// What the source costs for the moved seats from now until then (the overlap).
    pub overlap_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    tag = "kind"
)]
pub enum Step {
    BuyTargetLicences {
        sku_id: SkuId,
        sku_part_number: String,
        purchase: TargetPurchase,
    },
    CreateTargetUser {
        source_upn: String,
        target_upn: String,
    },
    AssignTargetLicences {
        target_upn: String,
    },
    MigrateMailbox {
        source_upn: String,
        target_upn: String,
    },
    /// One library of the move (`index` in its list), its locations resolved: a per-user
    /// mapping (`onedrive://{user}/…`) gives one step per moving user, named by `target_upn`.
    MigrateLibrary {
        index: usize,
        source: String,
        target: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_upn: Option<String>,
    },
    /// A user's calendars and task lists, home to home (the move names both CalDAV servers).
    MigrateCalendars {
        source_upn: String,
        target_upn: String,
    },
    /// A user's address books, home to home (the move names both CardDAV servers).
    MigrateContacts {
        source_upn: String,
        target_upn: String,
    },
    FinalDeltaPass,
    Verify,
    UnassignSourceLicences {
        source_upn: String,
    },
    SourceLicences {
        action: SourceAction,
    },
    /// Seats cannot be bought through Microsoft Graph: an administrator buys them (Partner
    /// Center, the Microsoft 365 admin center). The run waits here, polling the target's
    /// subscribedSkus, until `prepaidUnits.enabled` reaches `enabled_at_least` or an operator
    /// confirms.
    AwaitTargetSeats {
        /// The target's directory (tenant) id.
        tenant_id: TenantId,
        sku_id: SkuId,
        sku_part_number: String,
        seats_to_buy: u32,
        enabled_at_least: u32,
    },
    /// A source subscription cannot be cancelled or reduced through Microsoft Graph: an
    /// administrator makes `action`, before `refund_deadlines` (the end of each seat batch's
    /// 7-day refund window still ahead) for a refund. The run waits until an operator confirms.
    AwaitSourceChange {
        tenant_id: TenantId,
        action: SourceAction,
        refund_deadlines: Vec<Timestamp>,
    },
    Report,
}

impl Step {
    /// A stable key: the run records each step's effect under it, so a re-run never repeats one.
    pub fn key(&self) -> String {
        match self {
            Step::BuyTargetLicences { sku_id, .. } => format!("buy:{sku_id}"),
            Step::CreateTargetUser { target_upn, .. } => {
                format!("create-user:{}", target_upn.to_lowercase())
            }
            Step::AssignTargetLicences { target_upn } => {
                format!("assign:{}", target_upn.to_lowercase())
            }
            Step::MigrateMailbox { source_upn, .. } => {
                format!("mailbox:{}", source_upn.to_lowercase())
            }
            Step::MigrateLibrary {
                index,
                target_upn: None,
                ..
            } => format!("library:{index}"),
            Step::MigrateLibrary {
                index,
                target_upn: Some(upn),
                ..
            } => format!("library:{index}:{}", upn.to_lowercase()),
            Step::MigrateCalendars { source_upn, .. } => {
                format!("calendars:{}", source_upn.to_lowercase())
            }
            Step::MigrateContacts { source_upn, .. } => {
                format!("contacts:{}", source_upn.to_lowercase())
            }
            Step::FinalDeltaPass => "final-delta".into(),
            Step::Verify => "verify".into(),
            Step::UnassignSourceLicences { source_upn } => {
                format!("unassign-source:{}", source_upn.to_lowercase())
            }
            Step::SourceLicences { action } => match action {
                SourceAction::Cancel {
                    subscription_id, ..
                } => format!("source-cancel:{subscription_id}"),
                SourceAction::Reduce {
                    subscription_id, ..
                } => format!("source-reduce:{subscription_id}"),
                SourceAction::VolumeLicensing {
                    subscription_id, ..
                } => format!("source-volume:{subscription_id}"),
            },
            Step::AwaitTargetSeats { sku_id, .. } => format!("await-seats:{sku_id}"),
            Step::AwaitSourceChange { action, .. } => {
                format!("await-source:{}", action.subscription_id())
            }
            Step::Report => "report".into(),
        }
    }
}

/// A library step's locations: what the runner copies, re-copies in the final pass and
/// verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LibraryRun {
    pub index: usize,
    pub source: String,
    pub target: String,
    pub target_upn: Option<String>,
}

impl Plan {
    /// Every library step of the plan, in plan order (one per moving user for a per-user
    /// mapping).
    pub fn library_runs(&self) -> Vec<LibraryRun> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::MigrateLibrary {
                    index,
                    source,
                    target,
                    target_upn,
                } => Some(LibraryRun {
                    index: *index,
                    source: source.clone(),
                    target: target.clone(),
                    target_upn: target_upn.clone(),
                }),
                _ => None,
            })
            .collect()
    }
}

impl SourceAction {
    pub fn subscription_id(&self) -> SubscriptionId {
        match self {
            SourceAction::Cancel {
                subscription_id, ..
            }
            | SourceAction::Reduce {
                subscription_id, ..
            }
            | SourceAction::VolumeLicensing {
                subscription_id, ..
            } => *subscription_id,
        }
    }
}

/// Within this many days of a seat batch's purchase, removing it is refunded (Microsoft's
/// cancellation policy for annual subscriptions, as the ledger applies it).
pub const REFUND_WINDOW_DAYS: i64 = 7;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// Hash of every input: a plan whose fingerprint differs from a fresh one is stale.
    pub fingerprint: String,
    pub computed_at: Timestamp,
    pub path: MovePath,
    pub users: Vec<MovedUser>,
    pub licences: Vec<LicenceLine>,
    pub source_actions: Vec<SourceAction>,
    pub costs: Vec<CostLine>,
    pub findings: Vec<Finding>,
    pub steps: Vec<Step>,
    /// What Microsoft's own cross-tenant migration would need for the same users, beside what
    /// tenantry's engines need (nothing). Absent from plans stored before it existed.
    #[serde(default)]
    pub microsoft_migration: Option<MicrosoftMigrationCost>,
}

/// Microsoft's cross-tenant mailbox and OneDrive migration needs one Cross Tenant User Data
/// Migration licence per migrated user (a one-time fee, assigned in the source or the target).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MicrosoftMigrationCost {
    pub sku_id: SkuId,
    pub sku_part_number: String,
    pub service_plans: Vec<String>,
    /// Per moved user: (source UPN, Microsoft's licences needed, tenantry's licences needed).
    pub users: Vec<MigrationLicences>,
    pub total_licences: u32,
    /// Licences tenantry's engines need for the same move: none.
    pub tenantry_licences: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MigrationLicences {
    pub source_upn: String,
    pub microsoft_licences: u32,
    pub tenantry_licences: u32,
}

fn microsoft_migration(users: &[MovedUser]) -> MicrosoftMigrationCost {
    use tenantry_ledger::catalog::{
        CROSS_TENANT_MIGRATION_PART, CROSS_TENANT_MIGRATION_PLANS, CROSS_TENANT_MIGRATION_SKU,
    };
    let users: Vec<MigrationLicences> = users
        .iter()
        .map(|u| MigrationLicences {
            source_upn: u.source_upn.clone(),
            microsoft_licences: 1,
            tenantry_licences: 0,
        })
        .collect();
    MicrosoftMigrationCost {
        sku_id: SkuId(uuid::Uuid::parse_str(CROSS_TENANT_MIGRATION_SKU).unwrap_or_default()),
        sku_part_number: CROSS_TENANT_MIGRATION_PART.to_string(),
        service_plans: CROSS_TENANT_MIGRATION_PLANS
            .iter()
            .map(|p| p.to_string())
            .collect(),
        total_licences: users.iter().map(|u| u.microsoft_licences).sum(),
        tenantry_licences: 0,
        users,
    }
}

impl Plan {
    pub fn blockers(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Blocker)
    }
    pub fn is_runnable(&self) -> bool {
        self.blockers().next().is_none()
    }
}

pub struct PlanInput<'a> {
    pub spec: &'a MoveSpec,
    pub source: &'a TenantSnapshot,
    pub target: &'a TenantSnapshot,
    pub catalog: &'a HashMap<SkuId, Sku>,
    pub probes: &'a Probes,
    /// Target UPNs (lower case) this move has already created.
    pub created_by_move: &'a BTreeSet<String>,
    pub now: Timestamp,
}

fn finding(
    severity: Severity,
    code: &'static str,
    subject: impl Into<String>,
    message: impl Into<String>,
) -> Finding {
    Finding {
        severity,
        code: code.to_string(),
        subject: subject.into(),
        message: message.into(),
    }
}

fn part(catalog: &HashMap<SkuId, Sku>, sku: SkuId) -> String {
    catalog
        .get(&sku)
        .map_or_else(|| sku.to_string(), |s| s.sku_part_number.clone())
}

/// (source UPN, target UPN) of every user the move names, before any check: the explicit
/// mapping, then each source user the domain rewrite applies to and the mapping does not name.
/// The one rule for who moves where: the planner and the mover's probes both follow it.
pub fn user_pairs(spec: &MoveSpec, source: &TenantSnapshot) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = spec
        .users
        .iter()
        .map(|m| (m.source_upn.clone(), m.target_upn.clone()))
        .collect();
    if let Some(rewrite) = &spec.domain_rewrite {
        let named: BTreeSet<String> = spec
            .users
            .iter()
            .map(|m| m.source_upn.to_lowercase())
            .collect();
        for u in &source.users {
            let upn = &u.user.user_principal_name;
            if named.contains(&upn.to_lowercase()) {
                continue;
            }
            if let Some(target) = rewrite.apply(upn) {
                pairs.push((upn.clone(), target));
            }
        }
    }
    pairs
}

/// Works out which source users move and where, with the findings about them.
fn moved_users(input: &PlanInput, findings: &mut Vec<Finding>) -> Vec<MovedUser> {
    let spec = input.spec;
    let by_upn: HashMap<String, &UserLicences> = input
        .source
        .users
        .iter()
        .map(|u| (u.user.user_principal_name.to_lowercase(), u))
        .collect();
    let target_upns: BTreeSet<String> = input
        .target
        .users
        .iter()
        .map(|u| u.user.user_principal_name.to_lowercase())
        .collect();
    let pairs = user_pairs(spec, input.source);
    if pairs.is_empty() {
        findings.push(finding(
            Severity::Blocker,
            "NoUsers",
            "users",
            "the move names no users: give a user mapping (CSV) or a domain rewrite rule",
        ));
    }
    let mut seen_targets = BTreeSet::new();
    let mut out = Vec::new();
    for (source_upn, target_upn) in pairs {
        let Some(source) = by_upn.get(&source_upn.to_lowercase()) else {
            findings.push(finding(
                Severity::Blocker,
                "UnknownSourceUser",
                &source_upn,
                format!("{source_upn} is not a user of the source tenant"),
            ));
            continue;
        };
        let target_upn = match validate_upn(&target_upn) {
            Ok(upn) => upn,
            Err(e) => {
                findings.push(finding(
                    Severity::Blocker,
                    "InvalidTargetUpn",
                    &target_upn,
                    e.detail,
                ));
                continue;
            }
        };
        let key = target_upn.to_lowercase();
        if !seen_targets.insert(key.clone()) {
            findings.push(finding(
                Severity::Blocker,
                "DuplicateTargetUpn",
                &target_upn,
                format!("two source users map to {target_upn}"),
            ));
            continue;
        }
        let already_created = input.created_by_move.contains(&key);
        if target_upns.contains(&key) && !already_created {
            findings.push(finding(
                Severity::Blocker,
                "TargetUpnExists",
                &target_upn,
                format!("{target_upn} already exists in the target tenant; map {source_upn} to another name or remove that user"),
            ));
        }
        if source.user.usage_location.is_none() && !source.licences.is_empty() {
            findings.push(finding(
                Severity::Blocker,
                "NoUsageLocation",
                &source.user.user_principal_name,
                format!(
                    "{} has no usage location, which licences in the target need; set it in the source first",
                    source.user.user_principal_name
                ),
            ));
        }
        let mut licences: Vec<PlannedLicence> = source
            .licences
            .iter()
            .map(|a| PlannedLicence {
                sku_id: a.sku_id,
                sku_part_number: part(input.catalog, a.sku_id),
                disabled_plans: a.disabled_plans.iter().copied().collect(),
            })
            .collect();
        licences.sort_by(|a, b| a.sku_part_number.cmp(&b.sku_part_number));
        out.push(MovedUser {
            source_upn: source.user.user_principal_name.clone(),
            target_upn,
            display_name: source.user.display_name.clone(),
            usage_location: source.user.usage_location.clone(),
            licences,
            already_created,
        });
    }
    out.sort_by(|a, b| {
        a.source_upn
            .to_lowercase()
            .cmp(&b.source_upn.to_lowercase())
    });
    out
}

fn assignable(sub: &Subscription) -> bool {
    matches!(
        sub.status,
        SubscriptionStatus::Active | SubscriptionStatus::Expired
    )
}

/// Seats per SKU in a tenant: (assignable capacity, consumed).
fn seat_counts(snapshot: &TenantSnapshot) -> BTreeMap<SkuId, (u32, u32)> {
    let mut counts: BTreeMap<SkuId, (u32, u32)> = BTreeMap::new();
    for sub in snapshot.subscriptions.iter().filter(|s| assignable(s)) {
        counts.entry(sub.sku_id).or_default().0 += sub.quantity;
    }
    for u in &snapshot.users {
        for a in &u.licences {
            counts.entry(a.sku_id).or_default().1 += 1;
        }
    }
    counts
}

fn licence_lines(
    input: &PlanInput,
    users: &[MovedUser],
    findings: &mut Vec<Finding>,
) -> Vec<LicenceLine> {
    let mut needed: BTreeMap<SkuId, (u32, u32)> = BTreeMap::new();
    let target_by_upn: HashMap<String, &UserLicences> = input
        .target
        .users
        .iter()
        .map(|u| (u.user.user_principal_name.to_lowercase(), u))
        .collect();
    for user in users {
        let done: BTreeSet<SkuId> = target_by_upn
            .get(&user.target_upn.to_lowercase())
            .filter(|_| user.already_created)
            .map(|t| t.licences.iter().map(|a| a.sku_id).collect())
            .unwrap_or_default();
        for licence in &user.licences {
            let entry = needed.entry(licence.sku_id).or_default();
            entry.0 += 1;
            if done.contains(&licence.sku_id) {
                entry.1 += 1;
            }
        }
    }
    let counts = seat_counts(input.target);
    let mut lines = Vec::new();
    for (sku_id, (seats_needed, already_assigned)) in needed {
        let part_number = part(input.catalog, sku_id);
        let (capacity, consumed) = counts.get(&sku_id).copied().unwrap_or((0, 0));
        let target_free = capacity.saturating_sub(consumed);
        let seats_to_buy = (seats_needed - already_assigned).saturating_sub(target_free);
        let mut line = LicenceLine {
            sku_id,
            sku_part_number: part_number.clone(),
            seats_needed,
            already_assigned,
            target_free,
            seats_to_buy,
            purchase: TargetPurchase::None,
            charge_cents: 0,
        };
        if seats_to_buy > 0 {
            if !input.spec.allow_purchase {
                findings.push(finding(
                    Severity::Blocker,
                    "InsufficientTargetSeats",
                    &part_number,
                    format!(
                        "the target needs {seats_to_buy} more {part_number} seats and buying is not allowed for this move"
                    ),
                ));
            } else if let Some(sku) = input.catalog.get(&sku_id) {
                // Add to an active, paid, non-volume subscription of the SKU if there is one.
                let mut candidates: Vec<&Subscription> = input
                    .target
                    .subscriptions
                    .iter()
                    .filter(|s| {
                        s.sku_id == sku_id
                            && s.status == SubscriptionStatus::Active
                            && s.channel != Channel::Volume
                            && !s.is_trial
                    })
                    .collect();
                candidates.sort_by_key(|s| (s.created_at, s.id));
                if let Some(sub) = candidates.first() {
                    let mut copy = (*sub).clone();
                    let to = sub.quantity + seats_to_buy;
                    line.charge_cents = copy
                        .change_quantity(to, 0, sku, input.now)
                        .map_or(0, |c| c.money.charged_cents);
                    line.purchase = TargetPurchase::AddSeats {
                        subscription_id: sub.id,
                        from: sub.quantity,
                        to,
                    };
                } else {
                    let order = SubscriptionOrder {
                        tenant_id: input.target.tenant_id,
                        quantity: seats_to_buy,
                        term: Term::Annual,
                        billing_cycle: BillingCycle::Monthly,
                        channel: Channel::Direct,
                        is_trial: false,
                        auto_renew: true,
                    };
                    line.charge_cents = Subscription::purchase(
                        SubscriptionId(uuid::Uuid::nil()),
                        &order,
                        sku,
                        input.now,
                    )
                    .map_or(0, |(_, m)| m.charged_cents);
                    line.purchase = TargetPurchase::NewSubscription {
                        quantity: seats_to_buy,
                    };
                }
            }
        }
        lines.push(line);
    }
    lines
}

/// What happens to the source's subscriptions at the end, simulated with the ledger's rules.
fn source_actions(
    input: &PlanInput,
    users: &[MovedUser],
    findings: &mut Vec<Finding>,
) -> Vec<SourceAction> {
    let mut moved_per_sku: BTreeMap<SkuId, u32> = BTreeMap::new();
    for user in users {
        for l in &user.licences {
            *moved_per_sku.entry(l.sku_id).or_default() += 1;
        }
    }
    let counts = seat_counts(input.source);
    let mut subs: Vec<&Subscription> = input
        .source
        .subscriptions
        .iter()
        .filter(|s| assignable(s))
        .collect();
    // Newest first: recent seats are the likeliest to be inside their refund window.
    subs.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let mut actions = Vec::new();
    let mut excess_per_sku: BTreeMap<SkuId, u32> = BTreeMap::new();
    if input.spec.path == MovePath::KeepSource {
        // A SKU the movers hold is reduced to what stays in use; a SKU no mover holds is not
        // part of the move and is left alone, since the source tenant stays in use.
        for (sku, (capacity, consumed)) in &counts {
            let moved = moved_per_sku.get(sku).copied().unwrap_or(0);
            let staying = consumed.saturating_sub(moved);
            let excess = if moved > 0 {
                capacity.saturating_sub(staying)
            } else {
                0
            };
            excess_per_sku.insert(*sku, excess);
        }
    }
    for sub in subs {
        let part_number = part(input.catalog, sub.sku_id);
        let Some(sku) = input.catalog.get(&sub.sku_id) else {
            continue;
        };
        if sub.channel == Channel::Volume {
            findings.push(finding(
                Severity::Warning,
                "VolumeLicensedSubscription",
                &part_number,
                format!(
                    "{} {part_number} seats were bought through volume licensing: change or end them in the Volume Licensing Service Center",
                    sub.quantity
                ),
            ));
            actions.push(SourceAction::VolumeLicensing {
                subscription_id: sub.id,
                sku_part_number: part_number,
                quantity: sub.quantity,
            });
            continue;
        }
        let cancel = |sub: &Subscription| {
            let mut copy = sub.clone();
            let outcome = copy.cancel(sku, input.now).ok();
            SourceAction::Cancel {
                subscription_id: sub.id,
                sku_part_number: part_number.clone(),
                immediate: outcome.as_ref().is_some_and(|o| o.immediate),
                effective_at: outcome.as_ref().map_or(sub.term_end, |o| o.effective_at),
                refund_cents: outcome.map_or(0, |o| o.money.refunded_cents),
            }
        };
        match input.spec.path {
            MovePath::RetireSource => actions.push(cancel(sub)),
            MovePath::KeepSource => {
                let excess = excess_per_sku.entry(sub.sku_id).or_default();
                if *excess == 0 {
                    continue;
                }
                if *excess >= sub.quantity {
                    *excess -= sub.quantity;
                    actions.push(cancel(sub));
                } else {
                    let to = sub.quantity - *excess;
                    *excess = 0;
                    let mut copy = sub.clone();
                    let change = copy.change_quantity(to, 0, sku, input.now).ok();
                    actions.push(SourceAction::Reduce {
                        subscription_id: sub.id,
                        sku_part_number: part_number,
                        from: sub.quantity,
                        to,
                        removed_now: change.as_ref().map_or(0, |c| c.seats_removed_now),
                        scheduled_at: change.as_ref().and_then(|c| c.effective_at),
                        refund_cents: change.map_or(0, |c| c.money.refunded_cents),
                    });
                }
            }
        }
    }
    actions
}

/// While both tenants pay: the source pays for moved seats until its cancellation or reduction
/// takes effect.
fn costs(input: &PlanInput, licences: &[LicenceLine], actions: &[SourceAction]) -> Vec<CostLine> {
    licences
        .iter()
        .map(|line| {
            let until = actions
                .iter()
                .filter_map(|a| match a {
                    SourceAction::Cancel {
                        subscription_id,
                        effective_at,
                        ..
                    } => Some((*subscription_id, *effective_at)),
                    SourceAction::Reduce {
                        subscription_id,
                        scheduled_at,
                        ..
                    } => Some((*subscription_id, scheduled_at.unwrap_or(input.now))),
                    SourceAction::VolumeLicensing { .. } => None,
                })
                .filter(|(id, _)| {
                    input
                        .source
                        .subscriptions
                        .iter()
                        .any(|s| s.id == *id && s.sku_id == line.sku_id)
                })
                .map(|(_, at)| at)
                .max()
                .unwrap_or(input.now);
            let price = input
                .catalog
                .get(&line.sku_id)
                .map_or(0, |s| s.monthly_price_cents);
            CostLine {
                sku_part_number: line.sku_part_number.clone(),
                seats_moved: line.seats_needed,
                source_pays_until: until,
                overlap_cents: prorate_cents(line.seats_needed, price, input.now, until),
            }
        })
        .collect()
}

fn fingerprint(input: &PlanInput) -> String {
    let mut hasher = Sha256::new();
    let parts = serde_json::json!({
        "spec": input.spec,
        "source": input.source,
        "target": input.target,
        "probes": input.probes,
        "created": input.created_by_move,
    });
    hasher.update(parts.to_string());
    hex::encode(hasher.finalize())
}

pub fn plan(input: &PlanInput) -> Plan {
    let mut findings = Vec::new();
    if input.spec.source_tenant_id == input.spec.target_tenant_id {
        findings.push(finding(
            Severity::Blocker,
            "SameTenant",
            "tenants",
            "the source and the target are the same tenant",
        ));
    }
    let users = moved_users(input, &mut findings);
    let licences = licence_lines(input, &users, &mut findings);
    let source_actions = source_actions(input, &users, &mut findings);
    let costs = costs(input, &licences, &source_actions);
    for failure in input
        .probes
        .mail_failures
        .iter()
        .chain(&input.probes.library_failures)
        .chain(&input.probes.dav_failures)
    {
        findings.push(finding(
            Severity::Blocker,
            "EndpointUnavailable",
            format!("{} {}", failure.side, failure.subject),
            failure.problem.clone(),
        ));
    }
    for missing in &input.probes.dav_homes_missing {
        findings.push(finding(
            Severity::Warning,
            "NoSourceHome",
            format!("{} {}", missing.side, missing.subject),
            missing.problem.clone(),
        ));
    }
    for refused in &input.probes.refused_names {
        findings.push(finding(
            Severity::Warning,
            "NameRefusedByTarget",
            format!("{}: {}", refused.library, refused.path),
            format!(
                "{} (renamed during the move; the renames are recorded)",
                refused.problem
            ),
        ));
    }
    for kind in PimKind::ALL {
        let (source, target) = input.spec.pim.of(kind);
        if !users.is_empty() && source.is_some() != target.is_some() {
            findings.push(finding(
                Severity::Blocker,
                "DavServerMissing",
                kind.name(),
                format!(
                    "give both a source and a target {} server, or neither",
                    match kind {
                        PimKind::Calendars => "CalDAV",
                        PimKind::Contacts => "CardDAV",
                    }
                ),
            ));
        }
    }
    if !users.is_empty() && input.spec.source_mail.is_some() != input.spec.target_mail.is_some() {
        findings.push(finding(
            Severity::Blocker,
            "MailServerMissing",
            "mail",
            "give both a source and a target mail server, or neither",
        ));
    }

    let mut steps = Vec::new();
    for line in &licences {
        if line.purchase == TargetPurchase::None {
            continue;
        }
        if input.spec.target_graph.is_some() {
            let enabled_now: u32 = input
                .target
                .subscriptions
                .iter()
                .filter(|s| s.sku_id == line.sku_id && s.status == SubscriptionStatus::Active)
                .map(|s| s.quantity)
                .sum();
            steps.push(Step::AwaitTargetSeats {
                tenant_id: input.target.tenant_id,
                sku_id: line.sku_id,
                sku_part_number: line.sku_part_number.clone(),
                seats_to_buy: line.seats_to_buy,
                enabled_at_least: enabled_now + line.seats_to_buy,
            });
        } else {
            steps.push(Step::BuyTargetLicences {
                sku_id: line.sku_id,
                sku_part_number: line.sku_part_number.clone(),
                purchase: line.purchase.clone(),
            });
        }
    }
    for user in &users {
        steps.push(Step::CreateTargetUser {
            source_upn: user.source_upn.clone(),
            target_upn: user.target_upn.clone(),
        });
    }
    for user in users.iter().filter(|u| !u.licences.is_empty()) {
        steps.push(Step::AssignTargetLicences {
            target_upn: user.target_upn.clone(),
        });
    }
    if input.spec.source_mail.is_some() && input.spec.target_mail.is_some() {
        for user in &users {
            steps.push(Step::MigrateMailbox {
                source_upn: user.source_upn.clone(),
                target_upn: user.target_upn.clone(),
            });
        }
    }
    for kind in input.spec.pim.kinds() {
        for user in &users {
            let (source_upn, target_upn) = (user.source_upn.clone(), user.target_upn.clone());
            steps.push(match kind {
                PimKind::Calendars => Step::MigrateCalendars {
                    source_upn,
                    target_upn,
                },
                PimKind::Contacts => Step::MigrateContacts {
                    source_upn,
                    target_upn,
                },
            });
        }
    }
    for (index, library) in input.spec.libraries.iter().enumerate() {
        if library.per_user() {
            // Each moving user's OneDrive, once the target user exists and is licensed
            // (`schedule`): OneDrive is provisioned only for a licensed user.
            for user in &users {
                let one = library.for_user(&user.source_upn, &user.target_upn);
                steps.push(Step::MigrateLibrary {
                    index,
                    source: one.source,
                    target: one.target,
                    target_upn: Some(user.target_upn.clone()),
                });
            }
        } else {
            steps.push(Step::MigrateLibrary {
                index,
                source: library.source.clone(),
                target: library.target.clone(),
                target_upn: None,
            });
        }
    }
    steps.push(Step::FinalDeltaPass);
    steps.push(Step::Verify);
    if input.spec.path == MovePath::KeepSource {
        for user in users.iter().filter(|u| !u.licences.is_empty()) {
            steps.push(Step::UnassignSourceLicences {
                source_upn: user.source_upn.clone(),
            });
        }
    }
    for action in &source_actions {
        let through_graph = input.spec.source_graph.is_some()
            && !matches!(action, SourceAction::VolumeLicensing { .. });
        if through_graph {
            let refund_deadlines = input
                .source
                .subscriptions
                .iter()
                .filter(|s| s.id == action.subscription_id())
                .flat_map(|s| &s.seat_batches)
                .map(|b| b.added_at.plus_days(REFUND_WINDOW_DAYS))
                .filter(|end| *end > input.now)
                .collect();
            steps.push(Step::AwaitSourceChange {
                tenant_id: input.source.tenant_id,
                action: action.clone(),
                refund_deadlines,
            });
        } else {
            steps.push(Step::SourceLicences {
                action: action.clone(),
            });
        }
    }
    steps.push(Step::Report);
    findings
        .sort_by(|a, b| (a.severity, &a.code, &a.subject).cmp(&(b.severity, &b.code, &b.subject)));

    let microsoft_migration = Some(microsoft_migration(&users));
    Plan {
        fingerprint: fingerprint(input),
        computed_at: input.now,
        path: input.spec.path,
        users,
        licences,
        source_actions,
        costs,
        findings,
        steps,
        microsoft_migration,
    }
}
