//! Subscriptions: seats of one SKU bought by one tenant, and their lifecycle.
//!
//! Lifecycle (Microsoft 365 commerce): `Active` → end of term, not renewed → `Expired` (grace:
//! users keep access, admins can reactivate) → `Disabled` (users lose access, no new assignments,
//! admins can still export data) → `Deleted` (terminal). A cancellation inside the refund window
//! goes straight to `Disabled`. Volume-licensing terms end at once: no grace period.
//!
//! Seats: adding is immediate and charged pro rata. Removing seats (or cancelling) is refunded pro
//! rata only within 7 days of when those seats were added (purchase, renewal or a mid-term batch);
//! after that the reduction is scheduled for the renewal date. Never below the assigned count.

use crate::catalog::Sku;
use crate::error::LedgerError;
use crate::guidance;
use crate::ids::{SkuId, SubscriptionId, TenantId};
use crate::money::prorate_cents;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Days after purchase or renewal (or after a batch of seats was added) with a prorated refund.
pub const REFUND_WINDOW_DAYS: i64 = 7;
/// Length of a trial and of its one extension.
pub const TRIAL_DAYS: i64 = 30;
/// A trial can be extended only this close to its end.
pub const TRIAL_EXTENSION_WINDOW_DAYS: i64 = 15;
pub const MAX_SEATS: u32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Term {
    Monthly,
    Annual,
    ThreeYear,
}

impl Term {
    pub fn days(self) -> i64 {
        match self {
            Term::Monthly => 30,
            Term::Annual => 365,
            Term::ThreeYear => 3 * 365,
        }
    }
    /// Grace period (status `Expired`) after an unrenewed end of term.
    fn grace_days(self) -> i64 {
        match self {
            Term::ThreeYear => 90,
            _ => 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BillingCycle {
    Monthly,
    /// The whole term billed up front.
    PerTerm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Channel {
    Direct,
    Partner,
    /// Bought under a volume licensing agreement: read-only here.
    Volume,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SubscriptionStatus {
    Active,
    Expired,
    Disabled,
    Deleted,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "Active",
            Self::Expired => "Expired",
            Self::Disabled => "Disabled",
            Self::Deleted => "Deleted",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Active" => Self::Active,
            "Expired" => Self::Expired,
            "Disabled" => Self::Disabled,
            "Deleted" => Self::Deleted,
            _ => return None,
        })
    }
}

/// A batch of seats and when it was added: each batch has its own refund window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatBatch {
    pub seats: u32,
    pub added_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: SubscriptionId,
    pub tenant_id: TenantId,
    pub sku_id: SkuId,
    pub quantity: u32,
    pub term: Term,
    pub billing_cycle: BillingCycle,
    pub channel: Channel,
    pub is_trial: bool,
    pub trial_extended: bool,
    pub status: SubscriptionStatus,
    /// Recurring billing: renews at the end of term when on.
    pub auto_renew: bool,
    /// Set when the customer cancelled (Graph counts those units as `lockedOut`).
    pub cancelled: bool,
    pub created_at: Timestamp,
    pub term_start: Timestamp,
    pub term_end: Timestamp,
    pub status_since: Timestamp,
    /// Seats of the current term, oldest batch first; they sum to `quantity`.
    pub seat_batches: Vec<SeatBatch>,
    /// A reduction that takes effect at the next renewal.
    pub scheduled_quantity: Option<u32>,
    /// Bumped by every change; the API's ETag.
    pub version: u64,
}

/// What a buyer asks for.
#[derive(Debug, Clone)]
pub struct SubscriptionOrder {
    pub tenant_id: TenantId,
    pub quantity: u32,
    pub term: Term,
    pub billing_cycle: BillingCycle,
    pub channel: Channel,
    pub is_trial: bool,
    pub auto_renew: bool,
}

/// The money side of a change, in cents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Money {
    pub charged_cents: u64,
    pub refunded_cents: u64,
}

/// The outcome of a seat change, as the buyer should hear it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeatChange {
    pub previous_quantity: u32,
    pub quantity: u32,
    pub seats_added: u32,
    pub seats_removed_now: u32,
    /// Total seats once a scheduled reduction applies, at `effective_at`.
    pub scheduled_quantity: Option<u32>,
    pub effective_at: Option<Timestamp>,
    pub money: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelOutcome {
    /// `true`: disabled now with a refund; `false`: runs to `effective_at` and is not renewed.
    pub immediate: bool,
    pub effective_at: Timestamp,
    pub money: Money,
}

/// A status change caused by time passing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    Renewed {
        at: Timestamp,
    },
    StatusChanged {
        to: SubscriptionStatus,
        at: Timestamp,
    },
}

fn refuse_volume(sub: &Subscription) -> Result<(), LedgerError> {
    if sub.channel == Channel::Volume {
        return Err(LedgerError::conflict(
            "VolumeLicensingReadOnly",
            guidance::VOLUME_READ_ONLY,
        ));
    }
    Ok(())
}

fn check_quantity(quantity: u32) -> Result<(), LedgerError> {
    if quantity == 0 || quantity > MAX_SEATS {
        return Err(LedgerError::invalid(
            "InvalidQuantity",
            format!("quantity must be between 1 and {MAX_SEATS}"),
        ));
    }
    Ok(())
}

impl Subscription {
    /// A new subscription and what it costs up to the first billing date.
    pub fn purchase(
        id: SubscriptionId,
        order: &SubscriptionOrder,
        sku: &Sku,
        now: Timestamp,
    ) -> Result<(Subscription, Money), LedgerError> {
        check_quantity(order.quantity)?;
        let term_days = if order.is_trial {
            TRIAL_DAYS
        } else {
            order.term.days()
        };
        let sub = Subscription {
            id,
            tenant_id: order.tenant_id,
            sku_id: sku.sku_id,
            quantity: order.quantity,
            term: order.term,
            billing_cycle: order.billing_cycle,
            channel: order.channel,
            is_trial: order.is_trial,
            trial_extended: false,
            status: SubscriptionStatus::Active,
            auto_renew: order.auto_renew,
            cancelled: false,
            created_at: now,
            term_start: now,
            term_end: now.plus_days(term_days),
            status_since: now,
            seat_batches: vec![SeatBatch {
                seats: order.quantity,
                added_at: now,
            }],
            scheduled_quantity: None,
            version: 1,
        };
        let charged = if sub.is_trial || sub.channel == Channel::Volume {
            0 // trials are free; volume licences are billed under the agreement
        } else {
            prorate_cents(
                sub.quantity,
                sku.monthly_price_cents,
                now,
                sub.paid_until(now),
            )
        };
        Ok((
            sub,
            Money {
                charged_cents: charged,
                refunded_cents: 0,
            },
        ))
    }

    /// Seats of this subscription that can hold assignments now.
    pub fn assignable_seats(&self) -> u32 {
        match self.status {
            SubscriptionStatus::Active | SubscriptionStatus::Expired => self.quantity,
            _ => 0,
        }
    }

    /// The end of the period already paid for: the next monthly billing date, or the term end.
    pub fn paid_until(&self, now: Timestamp) -> Timestamp {
        match self.billing_cycle {
            BillingCycle::PerTerm => self.term_end,
            BillingCycle::Monthly => {
                let mut next = self.term_start.plus_days(30);
                while next <= now && next < self.term_end {
                    next = next.plus_days(30);
                }
                next.min(self.term_end)
            }
        }
    }

    /// When the current status ends if nothing is done (Graph `nextLifecycleDateTime`).
    pub fn next_lifecycle_at(&self) -> Option<Timestamp> {
        match self.status {
            SubscriptionStatus::Active => Some(self.term_end),
            SubscriptionStatus::Expired => {
                Some(self.status_since.plus_days(self.term.grace_days()))
            }
            SubscriptionStatus::Disabled => Some(self.status_since.plus_days(self.disabled_days())),
            SubscriptionStatus::Deleted => None,
        }
    }

    fn disabled_days(&self) -> i64 {
        if self.channel == Channel::Volume {
            60
        } else {
            90
        }
    }

    fn set_status(&mut self, to: SubscriptionStatus, at: Timestamp) -> LifecycleEvent {
        self.status = to;
        self.status_since = at;
        LifecycleEvent::StatusChanged { to, at }
    }

    /// Applies every transition due by `now`. `assigned_floor` is the number of this
    /// subscription's seats still needed by assignments: a scheduled reduction never goes below it.
    pub fn advance(&mut self, now: Timestamp, assigned_floor: u32) -> Vec<LifecycleEvent> {
        let mut events = Vec::new();
        while let Some(due) = self.next_lifecycle_at() {
            if now < due {
                break;
            }
            let event = match self.status {
                SubscriptionStatus::Active
                    if self.auto_renew && self.channel != Channel::Volume =>
                {
                    self.renew(due, assigned_floor)
                }
                // Volume licensing: services become unavailable as soon as the term ends.
                SubscriptionStatus::Active if self.channel == Channel::Volume => {
                    self.set_status(SubscriptionStatus::Disabled, due)
                }
                SubscriptionStatus::Active => self.set_status(SubscriptionStatus::Expired, due),
                SubscriptionStatus::Expired => self.set_status(SubscriptionStatus::Disabled, due),
                SubscriptionStatus::Disabled => self.set_status(SubscriptionStatus::Deleted, due),
                SubscriptionStatus::Deleted => break,
            };
            events.push(event);
        }
        if !events.is_empty() {
            self.version += 1;
        }
        events
    }

    fn renew(&mut self, at: Timestamp, assigned_floor: u32) -> LifecycleEvent {
        if let Some(target) = self.scheduled_quantity.take() {
            self.quantity = target.max(assigned_floor).max(1);
        }
        // A trial that renews becomes a paid subscription for a full term.
        self.is_trial = false;
        self.term_start = at;
        self.term_end = at.plus_days(self.term.days());
        self.seat_batches = vec![SeatBatch {
            seats: self.quantity,
            added_at: at,
        }];
        LifecycleEvent::Renewed { at }
    }

    fn require_active(&self, action: &str) -> Result<(), LedgerError> {
        match self.status {
            SubscriptionStatus::Active => Ok(()),
            SubscriptionStatus::Deleted => Err(LedgerError::conflict(
                "SubscriptionDeleted",
                "this subscription is deleted; nothing can change it any more",
            )),
            other => Err(LedgerError::conflict(
                "SubscriptionNotActive",
                format!(
                    "cannot {action}: the subscription is {}; reactivate it first",
                    other.as_str()
                ),
            )),
        }
    }

    /// Sets the total number of seats (the admin center's "enter the new total").
    /// `assigned_floor`: seats of this subscription that assignments need; never go below it.
    pub fn change_quantity(
        &mut self,
        new_quantity: u32,
        assigned_floor: u32,
        sku: &Sku,
        now: Timestamp,
    ) -> Result<SeatChange, LedgerError> {
        refuse_volume(self)?;
        check_quantity(new_quantity)?;
        self.require_active("change the number of licences")?;
        if self.is_trial {
            return Err(LedgerError::conflict(
                "TrialSeatsFixed",
                "a trial's seats cannot be changed: buy the subscription first",
            ));
        }
        let previous = self.quantity;
        let mut change = SeatChange {
            previous_quantity: previous,
            quantity: previous,
            seats_added: 0,
            seats_removed_now: 0,
            scheduled_quantity: None,
            effective_at: None,
            money: Money::default(),
        };
        if new_quantity > previous {
            let added = new_quantity - previous;
            self.seat_batches.push(SeatBatch {
                seats: added,
                added_at: now,
            });
            self.quantity = new_quantity;
            // Buying seats cancels a reduction scheduled earlier.
            self.scheduled_quantity = None;
            change.seats_added = added;
            change.money.charged_cents =
                prorate_cents(added, sku.monthly_price_cents, now, self.paid_until(now));
        } else if new_quantity < previous {
            if new_quantity < assigned_floor {
                return Err(LedgerError::conflict(
                    "BelowAssigned",
                    format!(
                        "{assigned_floor} of these licences are assigned; unassign {} before reducing to {new_quantity}",
                        assigned_floor - new_quantity
                    ),
                ));
            }
            let wanted = previous - new_quantity;
            let removed_now = self.remove_refundable(wanted, now);
            self.quantity -= removed_now;
            change.seats_removed_now = removed_now;
            change.money.refunded_cents = prorate_cents(
                removed_now,
                sku.monthly_price_cents,
                now,
                self.paid_until(now),
            );
            if removed_now < wanted {
                self.scheduled_quantity = Some(new_quantity);
                change.scheduled_quantity = Some(new_quantity);
                change.effective_at = Some(self.term_end);
            } else {
                self.scheduled_quantity = None;
            }
        }
        change.quantity = self.quantity;
        self.version += 1;
        Ok(change)
    }

    /// Removes up to `wanted` seats from batches still inside their refund window, newest first.
    fn remove_refundable(&mut self, wanted: u32, now: Timestamp) -> u32 {
        let mut removed = 0;
        for batch in self.seat_batches.iter_mut().rev() {
            if removed == wanted {
                break;
            }
            if now < batch.added_at.plus_days(REFUND_WINDOW_DAYS) {
                let take = batch.seats.min(wanted - removed);
                batch.seats -= take;
                removed += take;
            }
        }
        self.seat_batches.retain(|b| b.seats > 0);
        removed
    }

    /// Cancels: inside the refund window the subscription is disabled now and refunded pro rata;
    /// after it, recurring billing is turned off and it ends with its term.
    pub fn cancel(&mut self, sku: &Sku, now: Timestamp) -> Result<CancelOutcome, LedgerError> {
        refuse_volume(self)?;
        self.require_active("cancel")?;
        let in_window = now < self.term_start.plus_days(REFUND_WINDOW_DAYS);
        let outcome = if self.is_trial || in_window {
            let refund = if self.is_trial {
                0
            } else {
                prorate_cents(
                    self.quantity,
                    sku.monthly_price_cents,
                    now,
                    self.paid_until(now),
                )
            };
            self.cancelled = true;
            self.auto_renew = false;
            self.scheduled_quantity = None;
            self.set_status(SubscriptionStatus::Disabled, now);
            CancelOutcome {
                immediate: true,
                effective_at: now,
                money: Money {
                    charged_cents: 0,
                    refunded_cents: refund,
                },
            }
        } else {
            if !self.auto_renew {
                return Err(LedgerError::conflict(
                    "AlreadyCancelled",
                    "this subscription is already set to end with its term",
                ));
            }
            self.auto_renew = false;
            self.cancelled = true;
            CancelOutcome {
                immediate: false,
                effective_at: self.term_end,
                money: Money::default(),
            }
        };
        self.version += 1;
        Ok(outcome)
    }

    /// Reactivates an expired or disabled subscription (a new term starts now), or turns
    /// recurring billing back on for one that was set to end.
    pub fn reactivate(&mut self, sku: &Sku, now: Timestamp) -> Result<Money, LedgerError> {
        refuse_volume(self)?;
        let money = match self.status {
            SubscriptionStatus::Deleted => {
                return Err(LedgerError::conflict(
                    "SubscriptionDeleted",
                    "a deleted subscription cannot be reactivated; buy a new one",
                ))
            }
            SubscriptionStatus::Active if self.auto_renew => {
                return Err(LedgerError::conflict(
                    "AlreadyActive",
                    "this subscription is active and renews automatically",
                ))
            }
            SubscriptionStatus::Active => Money::default(),
            SubscriptionStatus::Expired | SubscriptionStatus::Disabled => {
                self.set_status(SubscriptionStatus::Active, now);
                self.term_start = now;
                self.term_end = now.plus_days(self.term.days());
                self.is_trial = false;
                self.seat_batches = vec![SeatBatch {
                    seats: self.quantity,
                    added_at: now,
                }];
                Money {
                    charged_cents: prorate_cents(
                        self.quantity,
                        sku.monthly_price_cents,
                        now,
                        self.paid_until(now),
                    ),
                    refunded_cents: 0,
                }
            }
        };
        self.auto_renew = true;
        self.cancelled = false;
        self.scheduled_quantity = None;
        self.version += 1;
        Ok(money)
    }

    /// Extends a trial once, by 30 days, within 15 days of its end.
    pub fn extend_trial(&mut self, now: Timestamp) -> Result<(), LedgerError> {
        if !self.is_trial {
            return Err(LedgerError::conflict(
                "NotATrial",
                "only trials can be extended",
            ));
        }
        self.require_active("extend the trial")?;
        if self.trial_extended {
            return Err(LedgerError::conflict(
                "TrialAlreadyExtended",
                "a trial can be extended only once",
            ));
        }
        if now < self.term_end.plus_days(-TRIAL_EXTENSION_WINDOW_DAYS) {
            return Err(LedgerError::conflict(
                "TrialNotExtendable",
                format!("a trial can be extended only within {TRIAL_EXTENSION_WINDOW_DAYS} days of its end"),
            ));
        }
        self.term_end = self.term_end.plus_days(TRIAL_DAYS);
        self.trial_extended = true;
        self.version += 1;
        Ok(())
    }
}

/// A transfer of licences to another tenant: refused, always.
pub fn transfer_to_another_tenant() -> LedgerError {
    LedgerError::conflict("LicenseTransferNotSupported", guidance::TRANSFER_REFUSED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::seed_catalog;
    use crate::error::ErrorKind;

    const T0: Timestamp = Timestamp(1_700_000_000);

    fn e3() -> Sku {
        seed_catalog()
            .into_iter()
            .find(|s| s.sku_part_number == "ENTERPRISEPACK")
            .unwrap()
    }

    fn order(quantity: u32, channel: Channel) -> SubscriptionOrder {
        SubscriptionOrder {
            tenant_id: TenantId::new_random(),
            quantity,
            term: Term::Annual,
            billing_cycle: BillingCycle::PerTerm,
            channel,
            is_trial: false,
            auto_renew: true,
        }
    }

    fn buy(quantity: u32, channel: Channel) -> Subscription {
        Subscription::purchase(
            SubscriptionId::new_random(),
            &order(quantity, channel),
            &e3(),
            T0,
        )
        .unwrap()
        .0
    }

    #[test]
    fn purchase_charges_the_term_pro_rata() {
        let (sub, money) = Subscription::purchase(
            SubscriptionId::new_random(),
            &order(10, Channel::Direct),
            &e3(),
            T0,
        )
        .unwrap();
        assert_eq!(sub.status, SubscriptionStatus::Active);
        // 10 seats * 23.00/month * 12 months
        assert_eq!(money.charged_cents, 276_000);
    }

    #[test]
    fn zero_or_absurd_quantities_are_refused() {
        for q in [0, MAX_SEATS + 1] {
            let err = Subscription::purchase(
                SubscriptionId::new_random(),
                &order(q, Channel::Direct),
                &e3(),
                T0,
            )
            .unwrap_err();
            assert_eq!(err.code, "InvalidQuantity");
        }
    }

    #[test]
    fn lifecycle_without_renewal_runs_expired_disabled_deleted() {
        let mut sub = buy(5, Channel::Direct);
        sub.auto_renew = false;
        assert!(sub.advance(T0.plus_days(364), 0).is_empty());
        sub.advance(T0.plus_days(365), 0);
        assert_eq!(sub.status, SubscriptionStatus::Expired);
        assert_eq!(sub.assignable_seats(), 5, "users keep access during grace");
        sub.advance(T0.plus_days(365 + 29), 0);
        assert_eq!(sub.status, SubscriptionStatus::Expired);
        sub.advance(T0.plus_days(365 + 30), 0);
        assert_eq!(sub.status, SubscriptionStatus::Disabled);
        assert_eq!(sub.assignable_seats(), 0);
        sub.advance(T0.plus_days(365 + 30 + 90), 0);
        assert_eq!(sub.status, SubscriptionStatus::Deleted);
        assert_eq!(sub.next_lifecycle_at(), None);
    }

    #[test]
    fn a_long_jump_applies_every_transition_at_its_own_date() {
        let mut sub = buy(5, Channel::Direct);
        sub.auto_renew = false;
        let events = sub.advance(T0.plus_days(2_000), 0);
        assert_eq!(events.len(), 3);
        assert_eq!(sub.status, SubscriptionStatus::Deleted);
        assert_eq!(sub.status_since, T0.plus_days(365 + 30 + 90));
    }

    #[test]
    fn renewal_applies_a_scheduled_reduction_but_not_below_assigned() {
        let mut sub = buy(10, Channel::Direct);
        let change = sub.change_quantity(4, 0, &e3(), T0.plus_days(30)).unwrap();
        assert_eq!(change.seats_removed_now, 0);
        assert_eq!(change.scheduled_quantity, Some(4));
        assert_eq!(sub.quantity, 10);
        sub.advance(T0.plus_days(365), 6);
        assert_eq!(sub.status, SubscriptionStatus::Active);
        assert_eq!(sub.quantity, 6, "six seats were still assigned at renewal");
        assert_eq!(sub.term_end, T0.plus_days(730));
    }

    #[test]
    fn expired_can_be_reactivated_deleted_cannot() {
        let mut sub = buy(3, Channel::Direct);
        sub.auto_renew = false;
        sub.advance(T0.plus_days(370), 0);
        assert_eq!(sub.status, SubscriptionStatus::Expired);
        sub.reactivate(&e3(), T0.plus_days(370)).unwrap();
        assert_eq!(sub.status, SubscriptionStatus::Active);
        assert_eq!(sub.term_end, T0.plus_days(370 + 365));
        sub.auto_renew = false;
        sub.advance(T0.plus_days(5_000), 0);
        let err = sub.reactivate(&e3(), T0.plus_days(5_000)).unwrap_err();
        assert_eq!(err.code, "SubscriptionDeleted");
    }

    #[test]
    fn seat_removal_is_refunded_only_inside_each_batch_window() {
        let sku = e3();
        let mut sub = buy(10, Channel::Direct);
        // Day 3: still inside the purchase window → immediate, refunded.
        let change = sub.change_quantity(8, 0, &sku, T0.plus_days(3)).unwrap();
        assert_eq!(change.seats_removed_now, 2);
        assert!(change.money.refunded_cents > 0);
        assert_eq!(sub.quantity, 8);
        // Day 20: add 5 seats, charged pro rata for the rest of the term.
        let change = sub.change_quantity(13, 0, &sku, T0.plus_days(20)).unwrap();
        assert_eq!(change.seats_added, 5);
        assert_eq!(
            change.money.charged_cents,
            prorate_cents(5, 2_300, T0.plus_days(20), T0.plus_days(365))
        );
        // Day 25: the 5 new seats are inside their own window, the original 8 are not.
        let change = sub.change_quantity(6, 0, &sku, T0.plus_days(25)).unwrap();
        assert_eq!(change.seats_removed_now, 5);
        assert_eq!(change.scheduled_quantity, Some(6));
        assert_eq!(change.effective_at, Some(sub.term_end));
        assert_eq!(sub.quantity, 8);
    }

    #[test]
    fn seats_never_drop_below_assigned() {
        let mut sub = buy(10, Channel::Direct);
        let err = sub
            .change_quantity(4, 7, &e3(), T0.plus_days(1))
            .unwrap_err();
        assert_eq!(err.code, "BelowAssigned");
        assert_eq!(err.kind, ErrorKind::Conflict);
        assert_eq!(sub.quantity, 10);
    }

    #[test]
    fn cancel_inside_window_disables_now_with_refund_outside_runs_to_term_end() {
        let sku = e3();
        let mut early = buy(10, Channel::Direct);
        let outcome = early.cancel(&sku, T0.plus_days(2)).unwrap();
        assert!(outcome.immediate);
        assert_eq!(early.status, SubscriptionStatus::Disabled);
        assert_eq!(
            outcome.money.refunded_cents,
            prorate_cents(10, 2_300, T0.plus_days(2), T0.plus_days(365))
        );

        let mut late = buy(10, Channel::Direct);
        let outcome = late.cancel(&sku, T0.plus_days(8)).unwrap();
        assert!(!outcome.immediate);
        assert_eq!(outcome.money.refunded_cents, 0);
        assert_eq!(late.status, SubscriptionStatus::Active);
        late.advance(T0.plus_days(365), 0);
        assert_eq!(late.status, SubscriptionStatus::Expired);
    }

    #[test]
    fn volume_subscriptions_are_read_only_and_end_at_once() {
        let sku = e3();
        let mut sub = buy(100, Channel::Volume);
        for err in [
            sub.clone().change_quantity(120, 0, &sku, T0).unwrap_err(),
            sub.clone().cancel(&sku, T0).unwrap_err(),
            sub.clone().reactivate(&sku, T0).unwrap_err(),
        ] {
            assert_eq!(err.code, "VolumeLicensingReadOnly");
            assert!(err.detail.contains("Volume Licensing Service Center"));
        }
        sub.advance(T0.plus_days(365), 0);
        assert_eq!(sub.status, SubscriptionStatus::Disabled, "no grace period");
    }

    #[test]
    fn trial_extends_once_within_fifteen_days_of_its_end() {
        let mut o = order(25, Channel::Direct);
        o.is_trial = true;
        let (mut trial, money) =
            Subscription::purchase(SubscriptionId::new_random(), &o, &e3(), T0).unwrap();
        assert_eq!(money.charged_cents, 0);
        assert_eq!(trial.term_end, T0.plus_days(30));
        assert_eq!(
            trial.extend_trial(T0.plus_days(5)).unwrap_err().code,
            "TrialNotExtendable"
        );
        trial.extend_trial(T0.plus_days(20)).unwrap();
        assert_eq!(trial.term_end, T0.plus_days(60));
        assert_eq!(
            trial.extend_trial(T0.plus_days(50)).unwrap_err().code,
            "TrialAlreadyExtended"
        );
        assert_eq!(
            trial
                .change_quantity(30, 0, &e3(), T0.plus_days(21))
                .unwrap_err()
                .code,
            "TrialSeatsFixed"
        );
    }

    #[test]
    fn monthly_billing_charges_until_the_next_billing_date() {
        let mut o = order(1, Channel::Direct);
        o.billing_cycle = BillingCycle::Monthly;
        let (sub, money) =
            Subscription::purchase(SubscriptionId::new_random(), &o, &e3(), T0).unwrap();
        assert_eq!(sub.paid_until(T0.plus_days(45)), T0.plus_days(60));
        assert_eq!(
            money.charged_cents,
            prorate_cents(1, 2_300, T0, T0.plus_days(30))
        );
    }

    #[test]
    fn transfer_is_always_refused_with_guidance() {
        let err = transfer_to_another_tenant();
        assert_eq!(err.code, "LicenseTransferNotSupported");
        assert!(err.detail.contains("/v1/moves"));
    }
}
