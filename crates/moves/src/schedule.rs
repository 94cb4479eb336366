//! The run's dependency graph: which steps each step waits for, and which servers it works on.
//! Pure, like the planner: a worker may take any step whose dependencies are all done, so
//! independent mailboxes and libraries run at once, while the order that matters holds (seats
//! before the licences that need them, a user before its licences and its mailbox, all data
//! before the final pass and verification, the source changed last, the report at the end).

use crate::model::{MoveSpec, PimKind};
use crate::plan::{Plan, Step};
use std::collections::{BTreeSet, HashSet};

/// A step as the queue stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledStep {
    pub key: String,
    pub step: Step,
    /// Keys of the steps that must be done before this one starts (in plan order).
    pub after: Vec<String>,
    /// The servers this step works on (`scheme://host[:port]`, lower case): the queue runs at
    /// most a configured number of steps per server at once.
    pub servers: Vec<String>,
}

/// `scheme://host[:port]` of a URL, lower case, without user information; `None` for a local
/// path (no server to spare).
pub fn server_of(location: &str) -> Option<String> {
    let (scheme, rest) = location.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| format!("{scheme}://{host}").to_lowercase())
}

/// The CalDAV or CardDAV servers of a kind the move names, as `dav[s]://host[:port]`: one
/// server usually answers both, and its calendar and address-book steps share its cap.
fn dav_servers(spec: &MoveSpec, kind: PimKind) -> impl Iterator<Item = String> + '_ {
    let (source, target) = spec.pim.of(kind);
    [source, target].into_iter().flatten().filter_map(|s| {
        let (scheme, rest) = s.url.split_once("://")?;
        let scheme = if scheme.ends_with('s') { "davs" } else { "dav" };
        server_of(&format!("{scheme}://{rest}"))
    })
}

/// Every server a move touches: its mail, CalDAV and CardDAV servers and its libraries' hosts.
fn all_servers(spec: &MoveSpec) -> Vec<String> {
    let mut out = BTreeSet::new();
    for server in [&spec.source_mail, &spec.target_mail].into_iter().flatten() {
        out.extend(server_of(&server.url));
    }
    for kind in spec.pim.kinds() {
        out.extend(dav_servers(spec, kind));
    }
    // A per-user OneDrive mapping names no one server (Graph's budget is per tenant).
    for library in spec.libraries.iter().filter(|l| !l.per_user()) {
        out.extend(server_of(&library.source));
        out.extend(server_of(&library.target));
    }
    out.into_iter().collect()
}

fn servers(step: &Step, spec: &MoveSpec) -> Vec<String> {
    let mut out = BTreeSet::new();
    match step {
        Step::MigrateMailbox { .. } => {
            for server in [&spec.source_mail, &spec.target_mail].into_iter().flatten() {
                out.extend(server_of(&server.url));
            }
        }
        Step::MigrateLibrary { source, target, .. } => {
            out.extend(server_of(source));
            out.extend(server_of(target));
        }
        Step::MigrateCalendars { .. } => out.extend(dav_servers(spec, PimKind::Calendars)),
        Step::MigrateContacts { .. } => out.extend(dav_servers(spec, PimKind::Contacts)),
        // One pass over every mailbox and library, one after another: one slot per server.
        Step::FinalDeltaPass | Step::Verify => return all_servers(spec),
        _ => {}
    }
    out.into_iter().collect()
}

impl Plan {
    /// The steps that get the seats of `target_upn`'s licences: bought by the run, or (through
    /// Microsoft Graph) awaited from an administrator.
    fn seat_steps(
        &self,
        target_upn: &str,
        present: &impl Fn(String) -> Option<String>,
    ) -> Vec<String> {
        let skus: BTreeSet<_> = self
            .users
            .iter()
            .filter(|u| u.target_upn.eq_ignore_ascii_case(target_upn))
            .flat_map(|u| u.licences.iter().map(|l| l.sku_id))
            .collect();
        skus.iter()
            .flat_map(|s| [format!("buy:{s}"), format!("await-seats:{s}")])
            .filter_map(present)
            .collect()
    }

    /// The plan's steps with their dependencies and servers. A step waiting for "everything so
    /// far" (the final pass, the report) names only the steps nothing else waits for yet, which
    /// implies the rest: the lists stay short however many mailboxes a move has.
    pub fn schedule(&self, spec: &MoveSpec) -> Vec<ScheduledStep> {
        let keys: HashSet<String> = self.steps.iter().map(Step::key).collect();
        let present = |key: String| keys.contains(&key).then_some(key);
        // Steps nothing depends on yet, in plan order.
        let mut frontier: Vec<String> = Vec::new();
        let mut out = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            let key = step.key();
            let after: Vec<String> = match step {
                Step::BuyTargetLicences { .. }
                | Step::AwaitTargetSeats { .. }
                | Step::MigrateLibrary {
                    target_upn: None, ..
                } => vec![],
                // Seats before users (a user is created only once the licences it will hold can
                // be had, so a move waiting for a purchase leaves the target untouched), users
                // before their licences.
                Step::CreateTargetUser { target_upn, .. } => self.seat_steps(target_upn, &present),
                Step::AssignTargetLicences { target_upn } => {
                    let upn = target_upn.to_lowercase();
                    present(format!("create-user:{upn}"))
                        .into_iter()
                        .chain(self.seat_steps(target_upn, &present))
                        .collect()
                }
                // A mailbox exists once its user is licensed (or at least created); so do its
                // calendar and address-book homes, copied beside the mailbox, not after it.
                Step::MigrateMailbox { target_upn, .. }
                | Step::MigrateCalendars { target_upn, .. }
                | Step::MigrateContacts { target_upn, .. }
                | Step::MigrateLibrary {
                    target_upn: Some(target_upn),
                    ..
                } => {
                    let upn = target_upn.to_lowercase();
                    present(format!("assign:{upn}"))
                        .or_else(|| present(format!("create-user:{upn}")))
                        .into_iter()
                        .collect()
                }
                Step::FinalDeltaPass | Step::Report => frontier.clone(),
                Step::Verify => present("final-delta".into()).into_iter().collect(),
                Step::UnassignSourceLicences { .. } => {
                    present("verify".into()).into_iter().collect()
                }
                // The source changes after verification and after its movers gave their seats back
                // (through Graph by an administrator, the same way).
                Step::SourceLicences { .. } | Step::AwaitSourceChange { .. } => self
                    .steps
                    .iter()
                    .filter(|s| matches!(s, Step::Verify | Step::UnassignSourceLicences { .. }))
                    .map(Step::key)
                    .collect(),
            };
            frontier.retain(|k| !after.contains(k));
            frontier.push(key.clone());
            out.push(ScheduledStep {
                servers: servers(step, spec),
                key,
                step: step.clone(),
                after,
            });
        }
        out
    }
}
