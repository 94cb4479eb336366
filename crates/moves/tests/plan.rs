//! The planner on hand-built snapshots: both paths, blockers, and re-planning a half-done move.

use std::collections::{BTreeSet, HashMap};
use tenantry_ledger::assignment::Assignment;
use tenantry_ledger::catalog::{seed_catalog, Sku};
use tenantry_ledger::subscription::{BillingCycle, Channel, Subscription, SubscriptionOrder, Term};
use tenantry_ledger::user::User;
use tenantry_ledger::{SkuId, SubscriptionId, TenantId, Timestamp, UserId};
use tenantry_moves::model::{parse_user_csv, DomainRewrite, MovePath, MoveSpec, UserMapping};
use tenantry_moves::plan::{
    plan, PlanInput, Probes, Severity, SourceAction, Step, TargetPurchase, TenantSnapshot,
    UserLicences,
};

const NOW: Timestamp = Timestamp(1_800_000_000);

fn catalog() -> HashMap<SkuId, Sku> {
    seed_catalog().into_iter().map(|s| (s.sku_id, s)).collect()
}

fn sku(part: &str) -> SkuId {
    seed_catalog()
        .into_iter()
        .find(|s| s.sku_part_number == part)
        .unwrap()
        .sku_id
}

fn sub(
    tenant: TenantId,
    part: &str,
    quantity: u32,
    bought_days_ago: i64,
    channel: Channel,
) -> Subscription {
    let order = SubscriptionOrder {
        tenant_id: tenant,
        quantity,
        term: Term::Annual,
        billing_cycle: BillingCycle::Monthly,
        channel,
        is_trial: false,
        auto_renew: true,
    };
    let sku = catalog().remove(&sku(part)).unwrap();
    Subscription::purchase(
        SubscriptionId::new_random(),
        &order,
        &sku,
        NOW.plus_days(-bought_days_ago),
    )
    .unwrap()
    .0
}

fn user(tenant: TenantId, upn: &str, location: Option<&str>, skus: &[&str]) -> UserLicences {
    let user = User::new(UserId::new_random(), tenant, upn, upn, location, true, NOW).unwrap();
    let licences = skus
        .iter()
        .map(|p| Assignment {
            user_id: user.id,
            sku_id: sku(p),
            disabled_plans: Default::default(),
            assigned_at: NOW,
        })
        .collect();
    UserLicences { user, licences }
}

struct World {
    source: TenantSnapshot,
    target: TenantSnapshot,
    spec: MoveSpec,
}

fn world(path: MovePath) -> World {
    let (s, t) = (TenantId::new_random(), TenantId::new_random());
    let source = TenantSnapshot {
        tenant_id: s,
        subscriptions: vec![
            sub(s, "ENTERPRISEPACK", 10, 100, Channel::Direct),
            sub(s, "SPE_E5", 50, 30, Channel::Volume),
        ],
        users: vec![
            user(s, "adele@fabrikam.com", Some("US"), &["ENTERPRISEPACK"]),
            user(s, "bob@fabrikam.com", Some("FR"), &["ENTERPRISEPACK"]),
            user(s, "cara@fabrikam.com", Some("US"), &["ENTERPRISEPACK"]),
            user(s, "stays@fabrikam.com", Some("US"), &["ENTERPRISEPACK"]),
        ],
    };
    let target = TenantSnapshot {
        tenant_id: t,
        subscriptions: vec![sub(t, "ENTERPRISEPACK", 2, 200, Channel::Direct)],
        users: vec![user(
            t,
            "existing@contoso.com",
            Some("US"),
            &["ENTERPRISEPACK"],
        )],
    };
    let spec = MoveSpec {
        source_tenant_id: s,
        target_tenant_id: t,
        path,
        users: vec![
            UserMapping {
                source_upn: "adele@fabrikam.com".into(),
                target_upn: "adele@contoso.com".into(),
            },
            UserMapping {
                source_upn: "bob@fabrikam.com".into(),
                target_upn: "bob@contoso.com".into(),
            },
            UserMapping {
                source_upn: "cara@fabrikam.com".into(),
                target_upn: "cara@contoso.com".into(),
            },
        ],
        domain_rewrite: None,
        allow_purchase: true,
        source_mail: None,
        target_mail: None,
        libraries: vec![],
        source_graph: None,
        target_graph: None,
        pim: Default::default(),
    };
    World {
        source,
        target,
        spec,
    }
}

fn run(w: &World, created: &BTreeSet<String>) -> tenantry_moves::plan::Plan {
    plan(&PlanInput {
        spec: &w.spec,
        source: &w.source,
        target: &w.target,
        catalog: &catalog(),
        probes: &Probes::default(),
        created_by_move: created,
        now: NOW,
    })
}

#[test]
fn target_buys_only_the_missing_seats_on_its_existing_subscription() {
    let w = world(MovePath::RetireSource);
    let p = run(&w, &BTreeSet::new());
    assert!(p.is_runnable(), "{:?}", p.findings);
    let e3 = p
        .licences
        .iter()
        .find(|l| l.sku_part_number == "ENTERPRISEPACK")
        .unwrap();
    assert_eq!(
        (e3.seats_needed, e3.target_free, e3.seats_to_buy),
        (3, 1, 2)
    );
    assert!(matches!(
        e3.purchase,
        TargetPurchase::AddSeats { from: 2, to: 4, .. }
    ));
    assert!(e3.charge_cents > 0);
    assert!(matches!(
        p.steps.first(),
        Some(Step::BuyTargetLicences { .. })
    ));
    assert!(matches!(p.steps.last(), Some(Step::Report)));
}

#[test]
fn retire_cancels_outside_the_window_at_term_end_and_flags_volume() {
    let w = world(MovePath::RetireSource);
    let p = run(&w, &BTreeSet::new());
    let cancel = p
        .source_actions
        .iter()
        .find(|a| matches!(a, SourceAction::Cancel { .. }))
        .unwrap();
    let SourceAction::Cancel {
        immediate,
        refund_cents,
        ..
    } = cancel
    else {
        unreachable!()
    };
    assert!(!immediate, "bought 100 days ago: outside the refund window");
    assert_eq!(*refund_cents, 0);
    assert!(p
        .source_actions
        .iter()
        .any(|a| matches!(a, SourceAction::VolumeLicensing { quantity: 50, .. })));
    assert!(p
        .findings
        .iter()
        .any(|f| f.code == "VolumeLicensedSubscription" && f.severity == Severity::Warning));
    assert!(
        p.costs[0].overlap_cents > 0,
        "the source pays until its term ends"
    );
}

#[test]
fn keep_reduces_the_source_to_what_stays_in_use_after_unassigning_movers() {
    let w = world(MovePath::KeepSource);
    let p = run(&w, &BTreeSet::new());
    let reduce = p
        .source_actions
        .iter()
        .find(|a| matches!(a, SourceAction::Reduce { .. }))
        .unwrap();
    // 10 seats, 4 assigned, 3 move: 1 stays. The volume E5 nobody moves is only flagged.
    assert!(matches!(
        reduce,
        SourceAction::Reduce {
            from: 10,
            to: 1,
            removed_now: 0,
            scheduled_at: Some(_),
            ..
        }
    ));
    let unassign_at = p
        .steps
        .iter()
        .position(|s| matches!(s, Step::UnassignSourceLicences { .. }))
        .unwrap();
    let reduce_at = p
        .steps
        .iter()
        .position(|s| matches!(s, Step::SourceLicences { .. }))
        .unwrap();
    let verify_at = p
        .steps
        .iter()
        .position(|s| matches!(s, Step::Verify))
        .unwrap();
    assert!(
        verify_at < unassign_at && unassign_at < reduce_at,
        "source last, after verification"
    );
}

#[test]
fn bad_mappings_are_blockers() {
    let mut w = world(MovePath::RetireSource);
    w.spec.users.push(UserMapping {
        source_upn: "ghost@fabrikam.com".into(),
        target_upn: "ghost@contoso.com".into(),
    });
    w.spec.users.push(UserMapping {
        source_upn: "stays@fabrikam.com".into(),
        target_upn: "existing@contoso.com".into(),
    });
    w.source.users.push(user(
        w.source.tenant_id,
        "nowhere@fabrikam.com",
        None,
        &["ENTERPRISEPACK"],
    ));
    w.spec.users.push(UserMapping {
        source_upn: "nowhere@fabrikam.com".into(),
        target_upn: "nowhere@contoso.com".into(),
    });
    w.spec.allow_purchase = false;
    let p = run(&w, &BTreeSet::new());
    let codes: BTreeSet<&str> = p.blockers().map(|f| f.code.as_str()).collect();
    for code in [
        "UnknownSourceUser",
        "TargetUpnExists",
        "NoUsageLocation",
        "InsufficientTargetSeats",
    ] {
        assert!(codes.contains(code), "{code} missing from {codes:?}");
    }
    assert!(!p.is_runnable());
}

#[test]
fn replanning_a_half_done_move_buys_nothing_twice_and_is_deterministic() {
    let mut w = world(MovePath::RetireSource);
    let first = run(&w, &BTreeSet::new());
    assert_eq!(first, run(&w, &BTreeSet::new()), "same inputs, same plan");
    // The run bought the 2 seats and created + licensed adele.
    w.target.subscriptions[0].quantity = 4;
    let adele = user(
        w.target.tenant_id,
        "adele@contoso.com",
        Some("US"),
        &["ENTERPRISEPACK"],
    );
    w.target.users.push(adele);
    let created: BTreeSet<String> = ["adele@contoso.com".to_string()].into();
    let again = run(&w, &created);
    assert!(again.is_runnable(), "{:?}", again.findings);
    let e3 = &again.licences[0];
    assert_eq!(
        (e3.seats_needed, e3.already_assigned, e3.seats_to_buy),
        (3, 1, 0)
    );
    assert_ne!(first.fingerprint, again.fingerprint);
}

#[test]
fn a_domain_rewrite_moves_every_user_of_the_domain() {
    let mut w = world(MovePath::RetireSource);
    w.spec.users.clear();
    w.spec.domain_rewrite = Some(DomainRewrite {
        from: "fabrikam.com".into(),
        to: "contoso.com".into(),
    });
    let p = run(&w, &BTreeSet::new());
    assert_eq!(p.users.len(), 4);
    assert!(p.users.iter().any(|u| u.target_upn == "stays@contoso.com"));
}

/// Who moves where: the mapping first (as written), then the rewrite for every source user the
/// mapping does not name, whatever the case of its UPN. The mover probes exactly these users.
#[test]
fn user_pairs_are_the_mapping_then_the_rewrite_of_the_others() {
    let mut w = world(MovePath::RetireSource);
    w.spec.users.truncate(1);
    w.spec.users[0].source_upn = "ADELE@fabrikam.com".into();
    w.spec.users[0].target_upn = "a.vance@contoso.com".into();
    w.spec.domain_rewrite = Some(DomainRewrite {
        from: "fabrikam.com".into(),
        to: "contoso.com".into(),
    });
    let pair = |s: &str, t: &str| (s.to_string(), t.to_string());
    assert_eq!(
        tenantry_moves::plan::user_pairs(&w.spec, &w.source),
        vec![
            pair("ADELE@fabrikam.com", "a.vance@contoso.com"),
            pair("bob@fabrikam.com", "bob@contoso.com"),
            pair("cara@fabrikam.com", "cara@contoso.com"),
            pair("stays@fabrikam.com", "stays@contoso.com"),
        ]
    );
    let p = run(&w, &BTreeSet::new());
    assert_eq!(p.users.len(), 4);
    assert_eq!(p.users[0].target_upn, "a.vance@contoso.com");
}

#[test]
fn mapping_csv_is_parsed_with_clear_errors() {
    let m = parse_user_csv(
        "sourceUpn,targetUpn\nadele@a.com, adele@b.com\n# comment\n\nbob@a.com,bob@b.com\n",
    )
    .unwrap();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].target_upn, "adele@b.com");
    let err = parse_user_csv("adele@a.com\n").unwrap_err();
    assert_eq!(err.code, "InvalidUserMapping");
    assert!(err.detail.contains("line 1"));
}

#[test]
fn mapping_csv_from_a_spreadsheet_is_read() {
    // Byte-order mark, `;` separator, quoted fields, CRLF, an empty row, as Excel writes them.
    let m = parse_user_csv(
        "\u{feff}Source UPN;Target UPN\r\n\"adele@a.com\";\"adele@b.com\"\r\n;\r\nbob@a.com;bob@b.com\r\n",
    )
    .unwrap();
    let pairs: Vec<(&str, &str)> = m
        .iter()
        .map(|u| (u.source_upn.as_str(), u.target_upn.as_str()))
        .collect();
    assert_eq!(
        pairs,
        vec![("adele@a.com", "adele@b.com"), ("bob@a.com", "bob@b.com")]
    );
    let err = parse_user_csv("a@x;b@y\nc@x;d@y;e@z\n").unwrap_err();
    assert!(err.detail.starts_with("line 2: "), "{}", err.detail);
    assert!(err.detail.contains("3 field(s)"), "{}", err.detail);
}

#[test]
fn keep_leaves_skus_no_mover_holds_alone() {
    let mut w = world(MovePath::KeepSource);
    let s = w.source.tenant_id;
    w.source
        .subscriptions
        .push(sub(s, "POWER_BI_PRO", 5, 100, Channel::Direct));
    let p = run(&w, &BTreeSet::new());
    let touched: Vec<String> = p
        .source_actions
        .iter()
        .map(|a| {
            serde_json::to_value(a).unwrap()["skuPartNumber"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        !touched.contains(&"POWER_BI_PRO".to_string()),
        "{touched:?}"
    );
    assert!(
        touched.contains(&"ENTERPRISEPACK".to_string()),
        "{touched:?}"
    );
}

/// Every step a step waits for, directly or through others.
fn ancestors(schedule: &[tenantry_moves::schedule::ScheduledStep], key: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![key.to_string()];
    while let Some(k) = todo.pop() {
        let step = schedule.iter().find(|s| s.key == k).unwrap();
        for dep in &step.after {
            if out.insert(dep.clone()) {
                todo.push(dep.clone());
            }
        }
    }
    out
}

fn dav(url: &str) -> Option<tenantry_moves::model::DavServer> {
    Some(tenantry_moves::model::DavServer {
        url: url.into(),
        profile: "dav".into(),
    })
}

/// Calendars and address books are steps of their own per user: after the target user (and
/// its licences) exist, beside the mailbox rather than after it, before the final pass and
/// verification, on their own servers.
#[test]
fn calendars_and_contacts_move_beside_each_mailbox() {
    use tenantry_moves::model::MailServer;
    let mut w = world(MovePath::RetireSource);
    w.spec.source_mail = Some(MailServer {
        url: "imaps://mail.fabrikam.com".into(),
        profile: "src".into(),
    });
    w.spec.target_mail = Some(MailServer {
        url: "imaps://mail.contoso.com".into(),
        profile: "dst".into(),
    });
    w.spec.pim.source_caldav = dav("caldavs://DAV.fabrikam.com/");
    w.spec.pim.target_caldav = dav("caldavs://dav.contoso.com:8443/dav/");
    w.spec.pim.source_carddav = dav("carddavs://dav.fabrikam.com/");
    w.spec.pim.target_carddav = dav("carddavs://dav.contoso.com:8443/dav/");
    let p = run(&w, &BTreeSet::new());
    assert!(p.is_runnable(), "{:?}", p.findings);
    let schedule = p.schedule(&w.spec);
    let of = |key: &str| {
        schedule
            .iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("no step {key}"))
    };
    for user in ["adele", "bob", "cara"] {
        let calendars = of(&format!("calendars:{user}@fabrikam.com"));
        let contacts = of(&format!("contacts:{user}@fabrikam.com"));
        assert_eq!(
            calendars.step,
            Step::MigrateCalendars {
                source_upn: format!("{user}@fabrikam.com"),
                target_upn: format!("{user}@contoso.com"),
            }
        );
        for step in [calendars, contacts] {
            assert_eq!(
                step.after,
                [format!("assign:{user}@contoso.com")],
                "{}",
                step.key
            );
            let before = ancestors(&schedule, &step.key);
            assert!(
                before.contains(&format!("create-user:{user}@contoso.com")),
                "{before:?}"
            );
            assert!(
                before.iter().all(|k| !k.starts_with("mailbox:")),
                "{} waits for a mailbox: {before:?}",
                step.key
            );
            assert!(ancestors(&schedule, "final-delta").contains(&step.key));
            assert!(ancestors(&schedule, "verify").contains(&step.key));
        }
        // One server answers CalDAV and CardDAV: both steps count against its cap.
        assert_eq!(
            calendars.servers,
            ["davs://dav.contoso.com:8443", "davs://dav.fabrikam.com"]
        );
        assert_eq!(contacts.servers, calendars.servers);
    }
    // The final pass and verification hold a slot on every server the move touches.
    for key in ["final-delta", "verify"] {
        let servers = &of(key).servers;
        for s in ["davs://dav.fabrikam.com", "davs://dav.contoso.com:8443"] {
            assert!(servers.iter().any(|x| x == s), "{key}: {servers:?}");
        }
    }

    // Without a licence to wait for, a step waits for its user's creation.
    let mut unlicensed = world(MovePath::RetireSource);
    unlicensed.spec.pim.source_carddav = dav("carddav://127.0.0.1:5232/");
    unlicensed.spec.pim.target_carddav = dav("carddav://127.0.0.1:5233/");
    for u in &mut unlicensed.source.users {
        u.licences.clear();
    }
    let p = run(&unlicensed, &BTreeSet::new());
    let schedule = p.schedule(&unlicensed.spec);
    let step = schedule
        .iter()
        .find(|s| s.key == "contacts:bob@fabrikam.com")
        .unwrap();
    assert_eq!(step.after, ["create-user:bob@contoso.com"]);
    assert!(schedule.iter().all(|s| !s.key.starts_with("calendars:")));

    // One side only: a blocker naming what is missing, and no steps.
    let mut one_sided = world(MovePath::RetireSource);
    one_sided.spec.pim.source_caldav = dav("caldavs://dav.fabrikam.com/");
    let p = run(&one_sided, &BTreeSet::new());
    let blocker = p
        .findings
        .iter()
        .find(|f| f.code == "DavServerMissing")
        .expect("a blocker");
    assert_eq!(blocker.subject, "calendars");
    assert!(blocker.message.contains("CalDAV"), "{}", blocker.message);
    assert!(!p.is_runnable());
    assert!(p
        .steps
        .iter()
        .all(|s| !matches!(s, Step::MigrateCalendars { .. })));
}

#[test]
fn steps_wait_only_for_what_they_need_so_mailboxes_and_libraries_run_at_once() {
    use tenantry_moves::model::{LibraryMapping, MailServer};
    let mut w = world(MovePath::KeepSource);
    w.spec.source_mail = Some(MailServer {
        url: "imaps://Mail.Fabrikam.com:993".into(),
        profile: "src".into(),
    });
    w.spec.target_mail = Some(MailServer {
        url: "imaps://outlook.example:993".into(),
        profile: "dst".into(),
    });
    w.spec.libraries = vec![
        LibraryMapping {
            source: "webdavs://files.fabrikam.com/sites/a".into(),
            target: "/srv/target/a".into(),
            source_profile: None,
            target_profile: None,
        },
        LibraryMapping {
            source: "/srv/source/b".into(),
            target: "/srv/target/b".into(),
            source_profile: None,
            target_profile: None,
        },
    ];
    let p = run(&w, &BTreeSet::new());
    assert!(p.is_runnable(), "{:?}", p.findings);
    let schedule = p.schedule(&w.spec);
    assert_eq!(
        schedule.iter().map(|s| s.key.clone()).collect::<Vec<_>>(),
        p.steps.iter().map(Step::key).collect::<Vec<_>>(),
        "one scheduled step per planned step, in plan order"
    );
    // Dependencies point backwards: plan order stays a valid order to run in.
    for (i, step) in schedule.iter().enumerate() {
        for dep in &step.after {
            let at = schedule.iter().position(|s| &s.key == dep).unwrap();
            assert!(at < i, "{} waits for the later {dep}", step.key);
        }
    }
    let keys_of = |prefix: &str| -> Vec<String> {
        schedule
            .iter()
            .filter(|s| s.key.starts_with(prefix))
            .map(|s| s.key.clone())
            .collect()
    };
    let (buys, mailboxes, libraries) = (keys_of("buy:"), keys_of("mailbox:"), keys_of("library:"));
    assert_eq!((buys.len(), mailboxes.len(), libraries.len()), (1, 3, 2));
    let of = |key: &str| schedule.iter().find(|s| s.key == key).unwrap();
    // A user waits for the seats of its licences, its licences for the user and the seats, its
    // mailbox for its licences.
    assert_eq!(of("create-user:bob@contoso.com").after, [buys[0].clone()]);
    assert_eq!(
        of("assign:bob@contoso.com").after,
        ["create-user:bob@contoso.com".to_string(), buys[0].clone()]
    );
    assert_eq!(
        of("mailbox:bob@fabrikam.com").after,
        ["assign:bob@contoso.com"]
    );
    assert!(of(&buys[0]).after.is_empty());
    // Libraries wait for nothing; no mailbox or library waits for another one.
    for key in mailboxes.iter().chain(&libraries) {
        let before = ancestors(&schedule, key);
        assert!(
            before
                .iter()
                .all(|k| !k.starts_with("mailbox:") && !k.starts_with("library:")),
            "{key} waits for {before:?}"
        );
    }
    assert!(libraries.iter().all(|k| of(k).after.is_empty()));
    // The final pass comes after all data; verification after it; the source changes last.
    let all_data: BTreeSet<String> = mailboxes
        .iter()
        .chain(&libraries)
        .chain(&buys)
        .cloned()
        .collect();
    assert!(ancestors(&schedule, "final-delta").is_superset(&all_data));
    assert_eq!(of("verify").after, ["final-delta"]);
    for unassign in keys_of("unassign-source:") {
        assert_eq!(of(&unassign).after, ["verify"]);
    }
    let source_steps = keys_of("source-");
    assert!(!source_steps.is_empty());
    for key in &source_steps {
        let before = ancestors(&schedule, key);
        assert!(before.contains("verify"));
        assert!(keys_of("unassign-source:")
            .iter()
            .all(|u| before.contains(u)));
    }
    let report = ancestors(&schedule, "report");
    assert_eq!(
        report.len(),
        schedule.len() - 1,
        "the report comes after everything"
    );
    // Servers: a mailbox works on both mail servers, a library on its hosts only.
    assert_eq!(
        of("mailbox:bob@fabrikam.com").servers,
        [
            "imaps://mail.fabrikam.com:993",
            "imaps://outlook.example:993"
        ]
    );
    assert_eq!(of("library:0").servers, ["webdavs://files.fabrikam.com"]);
    assert!(of("library:1").servers.is_empty() && of("report").servers.is_empty());
}

#[test]
fn through_graph_buying_and_reducing_become_steps_an_administrator_completes() {
    let mut w = world(MovePath::KeepSource);
    // A batch bought 3 days ago: its refund window ends in 4 days.
    w.source.subscriptions[0] = sub(w.source.tenant_id, "ENTERPRISEPACK", 10, 3, Channel::Direct);
    w.spec.target_graph = Some("target-graph".into());
    w.spec.source_graph = Some("source-graph".into());
    let p = run(&w, &BTreeSet::new());
    assert!(p.is_runnable(), "{:?}", p.findings);
    // The target has 2 seats, 1 used: 3 movers need 2 more, named exactly.
    let awaited: Vec<_> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::AwaitTargetSeats {
                tenant_id,
                sku_id,
                sku_part_number,
                seats_to_buy,
                enabled_at_least,
            } => Some((
                *tenant_id,
                *sku_id,
                sku_part_number.clone(),
                *seats_to_buy,
                *enabled_at_least,
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        awaited,
        vec![(
            w.target.tenant_id,
            sku("ENTERPRISEPACK"),
            "ENTERPRISEPACK".to_string(),
            2,
            4
        )]
    );
    assert!(!p
        .steps
        .iter()
        .any(|s| matches!(s, Step::BuyTargetLicences { .. })));
    // The source's reduction waits for an administrator, with the end of the refund window.
    let source: Vec<_> = p
        .steps
        .iter()
        .filter_map(|s| match s {
            Step::AwaitSourceChange {
                action: SourceAction::Reduce { from, to, .. },
                refund_deadlines,
                ..
            } => Some((*from, *to, refund_deadlines.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(source, vec![(10, 1, vec![NOW.plus_days(4)])]);
    // Volume licensing stays information only (nothing to wait for).
    assert!(p.steps.iter().any(|s| matches!(
        s,
        Step::SourceLicences {
            action: SourceAction::VolumeLicensing { .. }
        }
    )));
    let keys: BTreeSet<_> = p.steps.iter().map(|s| s.key()).collect();
    assert_eq!(keys.len(), p.steps.len(), "step keys are unique");
}

#[test]
fn the_plan_states_what_microsofts_own_migration_would_cost() {
    let w = world(MovePath::RetireSource);
    let p = run(&w, &BTreeSet::new());
    let m = p.microsoft_migration.expect("stated in every plan");
    assert_eq!(m.sku_id.to_string(), "946ce899-873d-44bb-9d8b-671870cbfdbf");
    assert_eq!(
        m.service_plans,
        vec!["EXCHANGEONLINE_T2TMBXMOVE", "SHAREPOINTONLINE_T2TODMOVE"]
    );
    assert_eq!(m.users.len(), 3);
    assert!(m
        .users
        .iter()
        .all(|u| u.microsoft_licences == 1 && u.tenantry_licences == 0));
    assert_eq!((m.total_licences, m.tenantry_licences), (3, 0));
    // A plan stored before the field existed is still readable.
    let mut old = serde_json::to_value(run(&w, &BTreeSet::new())).unwrap();
    old.as_object_mut().unwrap().remove("microsoftMigration");
    let back: tenantry_moves::plan::Plan = serde_json::from_value(old).unwrap();
    assert!(back.microsoft_migration.is_none());
}

/// `onedrive://{user}/…` on both sides: one library step per moving user, source UPN to target
/// UPN after the domain rewrite, each after its target user exists and is licensed (OneDrive is
/// provisioned for licensed users only), all before the final pass; a fixed library stays one
/// step with nothing to wait for.
#[test]
fn a_per_user_onedrive_library_is_one_step_per_moving_user_after_their_licence() {
    use tenantry_moves::model::LibraryMapping;
    let mut w = world(MovePath::RetireSource);
    // The users come from the domain rewrite, not a list: the rewrite names the targets.
    w.spec.users.clear();
    w.spec.domain_rewrite = Some(DomainRewrite {
        from: "fabrikam.com".into(),
        to: "contoso.com".into(),
    });
    w.spec.libraries = vec![
        LibraryMapping {
            source: "/srv/share".into(),
            target: "sharepoint://contoso.sharepoint.com/sites/Finance/Documents".into(),
            source_profile: None,
            target_profile: Some("g".into()),
        },
        LibraryMapping {
            source: "onedrive://{user}/".into(),
            target: "onedrive://{user}/From Fabrikam".into(),
            source_profile: Some("g".into()),
            target_profile: Some("g".into()),
        },
    ];
    w.spec.validate().unwrap();
    let p = run(&w, &BTreeSet::new());
    assert!(p.is_runnable(), "{:?}", p.findings);
    let runs = p.library_runs();
    let moving: Vec<&str> = p.users.iter().map(|u| u.source_upn.as_str()).collect();
    assert_eq!(runs.len(), 1 + moving.len(), "{runs:?}");
    assert_eq!(runs[0].target_upn, None);
    let schedule = p.schedule(&w.spec);
    let of = |key: &str| {
        schedule
            .iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("no step {key}"))
    };
    assert!(of("library:0").after.is_empty());
    for source_upn in moving {
        let user = source_upn.split('@').next().unwrap();
        let key = format!("library:1:{user}@contoso.com");
        let step = of(&key);
        assert_eq!(
            step.step,
            Step::MigrateLibrary {
                index: 1,
                source: format!("onedrive://{user}@fabrikam.com/"),
                target: format!("onedrive://{user}@contoso.com/From Fabrikam"),
                target_upn: Some(format!("{user}@contoso.com")),
            }
        );
        assert_eq!(step.after, [format!("assign:{user}@contoso.com")], "{key}");
        assert!(ancestors(&schedule, &key).contains(&format!("create-user:{user}@contoso.com")));
        assert!(ancestors(&schedule, "final-delta").contains(&key));
    }
    assert_eq!(
        schedule
            .iter()
            .filter(|s| s.key.starts_with("library:1:"))
            .count(),
        4,
        "the rewrite moves all four users of the domain"
    );
}
