//! A move whose target data lives in Microsoft 365: a local library into a SharePoint library
//! and Dovecot mailboxes into Exchange Online mailboxes, both on the test kit's
//! documentation-faithful fake Graph (not a live tenant), with the app of a `graph` connection
//! profile. The server is killed (SIGKILL) in the middle of the mailboxes and its local engine
//! state deleted before the restart, so the steps resume from what the database holds, as on
//! another worker: every message and file arrives exactly once, the final pass copies nothing,
//! and the saved states hold the Exchange and SharePoint engines' tables.

mod support;

use serde_json::{json, Value};
use std::time::Duration;
use support::mail::{dovecot, seed_mail};
use support::*;
use tenantry_testkit::graph_fake::{FakeGraph, FakeGraphOptions, CLIENT_ID, CLIENT_SECRET, TENANT};
use tenantry_testkit::tls::{app_certificate, AppCertificate};
use tenantry_testkit::tree::{fingerprint, sample_tree};

const USERS: [&str; 3] = ["adele", "bob", "cara"];
const SHAREPOINT: &str =
    "sharepoint://contoso.sharepoint.com/sites/Finance/Shared%20Documents/Moved";

async fn wait_state(s: &Server, id: &str, until: impl Fn(&Value) -> bool, what: &str) -> Value {
    s.wait_move(id, what, Duration::from_secs(300), until).await
}

/// Both tenants in this server's ledger (the movers licensed in the source, seats enough in
/// the target), an IMAP profile for Dovecot and a graph profile `m365` for the fake Microsoft
/// 365: with the app's client secret, or with its certificate (through the CLI).
async fn tenants_and_profiles(
    s: &Server,
    fake: &FakeGraph,
    certificate: Option<&AppCertificate>,
) -> (String, String) {
    tenants_with_users(s, fake, &USERS, certificate).await
}

async fn tenants_with_users(
    s: &Server,
    fake: &FakeGraph,
    users: &[&str],
    certificate: Option<&AppCertificate>,
) -> (String, String) {
    let (source, target) = s.move_tenants(users, 5, 5).await;
    s.profiles(&MAIL_PROFILES[..1]).await;
    match certificate {
        None => {
            let graph = json!({"name": "m365", "kind": "graph", "tenantId": TENANT, "clientId": CLIENT_ID,
                "clientSecret": CLIENT_SECRET, "authority": fake.url(), "graphUrl": fake.url()});
            let (status, p) = s.post("/v1/connectionProfiles", OPERATOR, graph).await;
            assert_eq!(status, 201, "{p}");
        }
        Some(cert) => certificate_profile(s, fake, cert).await,
    }
    (source, target)
}

/// The base64 lines of a PEM block: none of them may be shown anywhere.
fn pem_lines(pem: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(pem)
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::to_string)
        .collect()
}

/// `tenantry profile create --kind graph --client-certificate FILE`: the key goes to the
/// server once and is never shown again, neither by the CLI nor by the API; a bad PEM or a
/// secret beside the certificate is refused by name.
async fn certificate_profile(s: &Server, fake: &FakeGraph, cert: &AppCertificate) {
    let out = std::process::Command::new(binary())
        .args(["profile", "create", "--name", "m365", "--kind", "graph"])
        .args(["--tenant-id", TENANT, "--client-id", CLIENT_ID])
        .arg("--client-certificate")
        .arg(&cert.pem_file)
        .args([
            "--authority",
            fake.url(),
            "--graph-url",
            fake.url(),
            "--json",
        ])
        .env("TENANTRY_SERVER", &s.base)
        .env("TENANTRY_TOKEN", OPERATOR)
        .env_remove("TENANTRY_TENANT")
        .output()
        .unwrap();
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{shown}");
    let (_, listed) = s.get("/v1/connectionProfiles", OPERATOR).await;
    let listed = listed.to_string();
    assert!(listed.contains("m365"), "{listed}");
    for line in pem_lines(&cert.key_pem) {
        assert!(!shown.contains(&line), "key material in the CLI's output");
        assert!(!listed.contains(&line), "key material in the API's answer");
    }
    assert!(!listed.contains("PRIVATE KEY") && !listed.contains("clientCertificate"));
    let pem = String::from_utf8(std::fs::read(&cert.pem_file).unwrap()).unwrap();
    let base = json!({"kind": "graph", "tenantId": TENANT, "clientId": CLIENT_ID,
        "authority": fake.url(), "graphUrl": fake.url()});
    let with = |name: &str, extra: Value| {
        let mut b = base.clone();
        b["name"] = json!(name);
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let both = s
        .post(
            "/v1/connectionProfiles",
            OPERATOR,
            with(
                "both",
                json!({"clientSecret": CLIENT_SECRET, "clientCertificate": pem}),
            ),
        )
        .await;
    assert_problem(&both, 422, "InvalidGraphProfile");
    // Half a key: the problem is named, the content is not echoed.
    let broken = format!("{}\n-----END PRIVATE KEY-----\n", &pem[..pem.len() / 3]);
    let bad = s
        .post(
            "/v1/connectionProfiles",
            OPERATOR,
            with("bad", json!({"clientCertificate": broken})),
        )
        .await;
    assert_problem(&bad, 422, "InvalidClientCertificate");
    for line in pem_lines(&cert.key_pem) {
        assert!(!bad.1.to_string().contains(&line), "{}", bad.1);
    }
}

/// The move's saved engine state `key`, as the SQLite file the engine wrote.
fn saved_state(s: &Server, move_id: &str, key: &str) -> rusqlite::Connection {
    let db = rusqlite::Connection::open_with_flags(
        s.dir.path().join("ledger.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let bytes: Vec<u8> = db
        .query_row(
            "SELECT state FROM engine_state WHERE move_id = ?1 AND state_key = ?2",
            [move_id, key],
            |r| r.get(0),
        )
        .unwrap_or_else(|e| panic!("no saved state {key}: {e}"));
    let file = s
        .dir
        .path()
        .join(format!("saved-{}.sqlite", key.replace('/', "_")));
    std::fs::write(&file, bytes).unwrap();
    rusqlite::Connection::open(file).unwrap()
}

fn count(db: &rusqlite::Connection, table: &str) -> i64 {
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_copies_into_sharepoint_and_exchange_exactly_once_across_a_lost_worker() {
    let fake = FakeGraph::start(FakeGraphOptions {
        // Byte-for-byte comparison below: no metadata written into the .docx and .pdf.
        rewrite_office_files: false,
        // Slow enough that the kill lands in the middle of the mailboxes.
        mail_request_delay: Duration::from_millis(60),
        ..Default::default()
    });
    let drive = fake.add_site("contoso.sharepoint.com", "Finance");
    for u in USERS {
        fake.add_mailbox(&format!("{u}@contoso.com"), false);
    }
    let source_mail = dovecot(&USERS, "fabrikam.com", ("srcadmin", "srcadminpw"), false);
    let messages = seed_mail(&source_mail, &USERS, "fabrikam.com").await;
    let library = tempfile::tempdir().unwrap();
    sample_tree(library.path());

    // SQLite: the saved engine states are read straight from the database file.
    let mut s = Server::start_on(None);
    let (source, target) = tenants_and_profiles(&s, &fake, None).await;
    let spec = |library_profile: Option<&str>, mail_profile: &str| {
        json!({
            "sourceTenantId": source, "targetTenantId": target, "path": "keep-source",
            "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
            "sourceMail": {"url": source_mail.host_url(), "profile": "src-imap"},
            "targetMail": {"url": "exchange://", "profile": mail_profile},
            "libraries": [{"source": library.path(), "target": SHAREPOINT, "targetProfile": library_profile}],
        })
    };
    // A SharePoint library without a graph profile, and Exchange with an IMAP profile: refused
    // before anything is stored, each with its own code.
    let refused = s.post("/v1/moves", OPERATOR, spec(None, "m365")).await;
    assert_problem(&refused, 422, "GraphProfileRequired");
    assert!(
        refused.1["detail"]
            .as_str()
            .unwrap()
            .contains("targetProfile"),
        "{}",
        refused.1
    );
    let refused = s
        .post("/v1/moves", OPERATOR, spec(Some("m365"), "src-imap"))
        .await;
    assert_problem(&refused, 422, "InvalidProfileKind");
    let (status, m) = s
        .post("/v1/moves", OPERATOR, spec(Some("m365"), "m365"))
        .await;
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_string();

    let plan = s.runnable_plan(&id).await;
    let first_mailbox = step_position(&plan, "migrateMailbox");
    s.run_move(&id).await;

    // A worker lost in the middle of the mailboxes, with its local state: the restarted server
    // has only what the database holds (the step's saved state, or none yet).
    let at_kill = wait_state(
        &s,
        &id,
        |m| {
            m["progress"]["done"].as_u64().unwrap_or(0) > first_mailbox as u64
                && fake.stats().messages_created > 0
        },
        "a mailbox step",
    )
    .await;
    s.kill();
    assert_eq!(
        at_kill["state"], "Running",
        "killed in the middle of the run"
    );
    let created_at_kill = fake.stats().messages_created;
    assert!(
        created_at_kill < messages as u64,
        "the kill came after the last mailbox ({created_at_kill} of {messages} created)"
    );
    let local = s.dir.path().join("tenantry-data/moves").join(&id);
    assert!(
        local.is_dir(),
        "the engines' local state is in {}",
        local.display()
    );
    std::fs::remove_dir_all(&local).unwrap();
    s.restart();
    wait_state(&s, &id, |m| m["state"] == "Completed", "completion").await;

    // Mail: each source message exactly once in its Exchange mailbox, received (not a draft).
    // seed_mail stores 30 + 5·i messages and an exact duplicate pair per user.
    let stats = fake.stats();
    assert_eq!(
        stats.messages_created, messages as u64,
        "no message created twice"
    );
    let mut arrived = 0;
    for (i, u) in USERS.iter().enumerate() {
        let got = fake.mail_messages(&format!("{u}@contoso.com"));
        assert_eq!(got.len(), 30 + 5 * i + 2, "{u}");
        assert!(got.iter().all(|m| !m.is_draft), "{u}: a draft");
        let subjects: std::collections::BTreeSet<_> =
            got.iter().map(|m| m.json["subject"].to_string()).collect();
        assert_eq!(
            subjects.len(),
            30 + 5 * i + 1,
            "{u}: the duplicate pair is the only repeat"
        );
        arrived += got.len();
    }
    assert_eq!(arrived, messages);

    // Files: the whole tree under Moved/, byte for byte.
    let tree = fingerprint(library.path());
    for (path, node) in &tree {
        let at = format!("Moved/{path}");
        if node.is_dir {
            assert!(fake.paths(&drive).contains(&at), "folder {at}");
            continue;
        }
        let file = fake
            .file(&drive, &at)
            .unwrap_or_else(|| panic!("{at} missing"));
        assert_eq!(
            file.content,
            std::fs::read(library.path().join(path)).unwrap(),
            "{at}"
        );
    }
    assert_eq!(
        fake.paths(&drive).len(),
        tree.len() + 1,
        "{:?}",
        fake.paths(&drive)
    );

    // The final pass ran every engine again on its state: nothing copied.
    let (_, report) = s.get(&format!("/v1/moves/{id}/report"), OPERATOR).await;
    let final_pass = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "final-delta")
        .expect("a final delta pass");
    let passes = final_pass["result"]["passes"].as_array().unwrap();
    assert_eq!(passes.len(), USERS.len() + 1, "{final_pass}");
    for pass in passes {
        let result = &pass["result"];
        if pass.get("library").is_some() {
            assert_eq!(result["copied_files"], 0, "{pass}");
        } else {
            let copied: u64 = result["folders"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["copied"].as_u64().unwrap())
                .sum();
            assert_eq!(copied, 0, "{pass}");
        }
    }

    // The states live in the database: the Exchange map per mailbox, the SharePoint drive's
    // items and delta link beside the files engine's records.
    for (i, u) in USERS.iter().enumerate() {
        let state = saved_state(&s, &id, &format!("mail/{u}@fabrikam.com"));
        assert_eq!(count(&state, "exchange_pending"), 0, "{u}");
        assert_eq!(
            count(&state, "exchange_map"),
            (30 + 5 * i + 2) as i64,
            "{u}"
        );
    }
    let files = saved_state(&s, &id, "files/0");
    assert_eq!(count(&files, "graph_delta"), 1);
    assert!(count(&files, "graph_items") >= tree.len() as i64);
}

/// The other direction on both kinds: Exchange → Exchange mailboxes through import/export
/// (mail, a calendar, a user folder) and a SharePoint library → a local folder, in one move.
/// The app proves who it is with a certificate (the graph profile holds no secret).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_copies_exchange_to_exchange_and_sharepoint_to_a_folder() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let keys = tempfile::tempdir().unwrap();
    let cert = app_certificate(keys.path(), "mover");
    fake.register_certificate(&cert.certificate_pem);
    let drive = fake.add_site("fabrikam.sharepoint.com", "Finance");
    let when = time::OffsetDateTime::from_unix_timestamp(1_600_000_000).unwrap();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    fake.put_file(&drive, "Reports/2024/q1.xlsx", b"quarter one", when);
    fake.put_file(&drive, "Reports/big.bin", &big, when);
    fake.put_file(&drive, "readme.txt", b"hello", when);
    let mut items = 0;
    for (i, u) in USERS.iter().enumerate() {
        let upn = format!("{u}@fabrikam.com");
        fake.add_export_mailbox(&upn, true);
        fake.add_export_mailbox(&format!("{u}@contoso.com"), false);
        let projects = fake.add_export_folder(&upn, "inbox", "Projekte", "IPF.Note");
        for n in 0..(22 + i) {
            let data = format!("{u} mail {n}");
            fake.add_export_item(&upn, "inbox", "IPM.Note", data.as_bytes());
        }
        fake.add_export_item(
            &upn,
            &projects,
            "IPM.Note",
            format!("{u} project").as_bytes(),
        );
        fake.add_export_item(
            &upn,
            "calendar",
            "IPM.Appointment",
            format!("{u} meeting").as_bytes(),
        );
        items += 22 + i + 2;
    }
    let target_library = tempfile::tempdir().unwrap();

    let s = Server::start_on(None);
    let (source, target) = tenants_and_profiles(&s, &fake, Some(&cert)).await;
    let (status, m) = s
        .post("/v1/moves", OPERATOR, json!({
            "sourceTenantId": source, "targetTenantId": target, "path": "keep-source",
            "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
            "sourceMail": {"url": "exchange://", "profile": "m365"},
            "targetMail": {"url": "exchange://", "profile": "m365"},
            "libraries": [{"source": "sharepoint://fabrikam.sharepoint.com/sites/Finance/Documents",
                           "target": target_library.path(), "sourceProfile": "m365"}],
        }))
        .await;
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    s.runnable_plan(&id).await;
    s.run_move(&id).await;
    wait_state(&s, &id, |m| m["state"] == "Completed", "completion").await;
    let stats = fake.stats();
    assert!(stats.tokens_for_assertions > 0, "{stats:?}");
    assert_eq!(
        stats.tokens_for_assertions, stats.tokens_issued,
        "no secret was used"
    );

    // Every item once, in the folder of the same well-known name (Posteingang → Inbox), the
    // user folder created below it; a calendar item stays in the calendar.
    assert_eq!(
        fake.stats().items_imported,
        items as u64,
        "no item imported twice"
    );
    for (i, u) in USERS.iter().enumerate() {
        let got = fake.export_items(&format!("{u}@contoso.com"));
        assert_eq!(got.len(), 22 + i + 2, "{u}");
        let in_folder = |path: &str| got.iter().filter(|(p, _)| p == path).count();
        assert_eq!(in_folder("Inbox"), 22 + i, "{u}: {got:?}");
        assert_eq!(in_folder("Inbox/Projekte"), 1, "{u}");
        assert_eq!(in_folder("Calendar"), 1, "{u}");
        let state = saved_state(&s, &id, &format!("mail/{u}@fabrikam.com"));
        assert_eq!(count(&state, "exchange_items"), (22 + i + 2) as i64, "{u}");
    }

    // The library, byte for byte, with SharePoint's modification times.
    let file = |p: &str| target_library.path().join(p);
    assert_eq!(
        std::fs::read(file("Reports/2024/q1.xlsx")).unwrap(),
        b"quarter one"
    );
    assert_eq!(std::fs::read(file("Reports/big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(file("readme.txt")).unwrap(), b"hello");
    let modified = std::fs::metadata(file("Reports/big.bin"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
        1_600_000_000
    );
    let saved = saved_state(&s, &id, "files/0");
    assert_eq!(
        count(&saved, "graph_delta"),
        1,
        "the source's delta link is kept"
    );

    // The final pass imported and downloaded nothing.
    let (_, report) = s.get(&format!("/v1/moves/{id}/report"), OPERATOR).await;
    let final_pass = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == "final-delta")
        .expect("a final delta pass");
    for pass in final_pass["result"]["passes"].as_array().unwrap() {
        let result = &pass["result"];
        if pass.get("library").is_some() {
            assert_eq!(result["copied_files"], 0, "{pass}");
        } else {
            for f in result["folders"].as_array().unwrap() {
                assert_eq!(f["copied"], 0, "{pass}");
            }
        }
    }
}

/// quickXorHash of `bytes`, as Graph reports it.
fn quick_xor(bytes: &[u8]) -> String {
    let mut qx = tenantry_graph::quickxor::QuickXor::default();
    qx.update(bytes);
    qx.base64()
}

/// SharePoint writes its metadata into Office documents and PDFs after upload (the fake does as
/// well): the move's verification knows it from the library step's saved state, so it names
/// those files as changed by the service, with what was sent and what is stored, and the move
/// completes (it used to fail its verification on every such file).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_of_office_documents_into_sharepoint_verifies_what_the_service_rewrote() {
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let drive = fake.add_site("contoso.sharepoint.com", "Finance");
    let library = tempfile::tempdir().unwrap();
    let files: [(&str, &[u8]); 3] = [
        ("Contracts/offer.docx", b"PK\x03\x04 an offer"),
        ("scan.pdf", b"%PDF-1.7 a scan"),
        ("notes.txt", b"plain notes"),
    ];
    for (path, content) in files {
        let at = library.path().join(path);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::fs::write(at, content).unwrap();
    }

    let s = Server::start_on(None);
    let (source, target) = tenants_and_profiles(&s, &fake, None).await;
    let (status, m) = s
        .post("/v1/moves", OPERATOR, json!({
            "sourceTenantId": source, "targetTenantId": target, "path": "keep-source",
            "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
            "libraries": [{"source": library.path(), "target": SHAREPOINT, "targetProfile": "m365"}],
        }))
        .await;
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    s.runnable_plan(&id).await;
    s.run_move(&id).await;
    wait_state(&s, &id, |m| m["state"] == "Completed", "completion").await;

    // The service did rewrite them: what it stores is not what was sent.
    let stored = |path: &str| fake.file(&drive, &format!("Moved/{path}")).unwrap().content;
    for (path, content) in &files[..2] {
        assert_ne!(stored(path), *content, "{path} rewritten by the fake");
    }
    assert_eq!(stored("notes.txt"), b"plain notes");

    let (_, report) = s.get(&format!("/v1/moves/{id}/report"), OPERATOR).await;
    let step = |key: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no step {key}: {report}"))
            .clone()
    };
    let verify = step("verify");
    let checks = verify["result"]["verified"].as_array().unwrap();
    assert_eq!(checks.len(), 1, "{verify}");
    let result = &checks[0]["result"];
    assert_eq!(
        result["changed_by_service"],
        json!(["Contracts/offer.docx", "scan.pdf"]),
        "{result}"
    );
    assert_eq!(result["files_identical"], 1, "{result}");
    for list in ["size_mismatch", "content_mismatch", "missing", "errors"] {
        assert_eq!(result[list], json!([]), "{list}: {result}");
    }
    let rewrites = result["service_rewrites"].as_array().unwrap();
    assert_eq!(rewrites.len(), 2, "{result}");
    for (rewrite, (path, content)) in rewrites.iter().zip(&files[..2]) {
        let now = stored(path);
        assert_eq!(rewrite["path"], *path);
        assert_eq!(rewrite["sent_size"], content.len(), "{rewrite}");
        assert_eq!(
            rewrite["sent_quick_xor_hash"],
            quick_xor(content),
            "{rewrite}"
        );
        assert_eq!(rewrite["stored_size"], now.len(), "{rewrite}");
        assert_eq!(
            rewrite["stored_quick_xor_hash"],
            quick_xor(&now),
            "{rewrite}"
        );
    }
    // Nor were they uploaded again by the final pass.
    for pass in step("final-delta")["result"]["passes"].as_array().unwrap() {
        assert_eq!(pass["result"]["copied_files"], 0, "{pass}");
    }
    // The verification's copy of the step's state is gone; the step's own file stays.
    let states = s
        .dir
        .path()
        .join("tenantry-data/moves")
        .join(&id)
        .join("files");
    let mut left: Vec<String> = std::fs::read_dir(&states)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("0.sqlite"))
        .collect();
    left.sort();
    assert_eq!(left, Vec::<String>::new(), "in {}", states.display());
    assert!(states.join("0.sqlite").is_file());
}

/// `onedrive://{user}/…` on both sides: each moving user's OneDrive goes to their own OneDrive
/// in the target (source UPN → target UPN by the domain rewrite), one step per user after their
/// licence, and the final pass and verification cover each of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_move_copies_each_users_onedrive_to_their_own() {
    const MOVERS: [&str; 2] = ["adele", "bob"];
    let fake = FakeGraph::start(FakeGraphOptions::default());
    let when = time::OffsetDateTime::from_unix_timestamp(1_600_000_000).unwrap();
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 253) as u8).collect();
    let mut targets = Vec::new();
    for u in MOVERS {
        let drive = fake.add_user(&format!("{u}@fabrikam.com"));
        fake.put_file(&drive, &format!("Notes/{u}.txt"), u.as_bytes(), when);
        fake.put_file(
            &drive,
            "Letter.docx",
            format!("{u}'s letter").as_bytes(),
            when,
        );
        fake.put_file(&drive, "big.bin", &big, when);
        targets.push(fake.add_user(&format!("{u}@contoso.com")));
    }

    let s = Server::start_on(None);
    let (source, target) = tenants_with_users(&s, &fake, &MOVERS, None).await;
    let (status, m) = s
        .post("/v1/moves", OPERATOR, json!({
            "sourceTenantId": source, "targetTenantId": target, "path": "keep-source",
            "domainRewrite": {"from": "fabrikam.com", "to": "contoso.com"},
            "libraries": [{"source": "onedrive://{user}/", "target": "onedrive://{user}/From Fabrikam",
                           "sourceProfile": "m365", "targetProfile": "m365"}],
        }))
        .await;
    assert_eq!(status, 201, "{m}");
    let id = m["id"].as_str().unwrap().to_string();
    let plan = s.runnable_plan(&id).await;
    let steps: Vec<&Value> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["kind"] == "migrateLibrary")
        .collect();
    assert_eq!(steps.len(), MOVERS.len(), "{plan}");
    for u in MOVERS {
        assert!(
            steps
                .iter()
                .any(|s| s["source"] == format!("onedrive://{u}@fabrikam.com/")
                    && s["target"] == format!("onedrive://{u}@contoso.com/From Fabrikam")
                    && s["targetUpn"] == format!("{u}@contoso.com")),
            "{u}: {steps:?}"
        );
    }
    s.run_move(&id).await;
    wait_state(&s, &id, |m| m["state"] == "Completed", "completion").await;

    for (u, drive) in MOVERS.iter().zip(&targets) {
        assert_eq!(
            fake.paths(drive),
            [
                "From Fabrikam".to_string(),
                "From Fabrikam/Letter.docx".into(),
                "From Fabrikam/Notes".into(),
                format!("From Fabrikam/Notes/{u}.txt"),
                "From Fabrikam/big.bin".into(),
            ],
            "{u}: their own files only"
        );
        let note = fake
            .file(drive, &format!("From Fabrikam/Notes/{u}.txt"))
            .unwrap();
        assert_eq!(note.content, u.as_bytes());
        assert_eq!(note.modified, when, "{u}: the time is kept");
        assert!(fake.file(drive, "From Fabrikam/big.bin").unwrap().content == big);
        let saved = saved_state(&s, &id, &format!("files/0/{u}@contoso.com"));
        assert_eq!(
            count(&saved, "graph_delta"),
            2,
            "{u}: both drives' delta links"
        );
    }

    // The final pass ran each user's library again (copying nothing); verification covered
    // each of them.
    let (_, report) = s.get(&format!("/v1/moves/{id}/report"), OPERATOR).await;
    let step = |key: &str| {
        report["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .unwrap_or_else(|| panic!("no step {key}: {report}"))
            .clone()
    };
    let passes = step("final-delta")["result"]["passes"].clone();
    assert_eq!(passes.as_array().unwrap().len(), MOVERS.len(), "{passes}");
    for pass in passes.as_array().unwrap() {
        assert_eq!(pass["result"]["copied_files"], 0, "{pass}");
    }
    let verify = step("verify");
    let checks = verify["result"]["verified"].as_array().unwrap();
    assert_eq!(checks.len(), MOVERS.len(), "{verify}");
    for u in MOVERS {
        let check = checks
            .iter()
            .find(|c| c["library"] == format!("onedrive://{u}@fabrikam.com/"))
            .unwrap_or_else(|| panic!("{u} not verified: {verify}"));
        // Each user's step state knows their own rewritten letter.
        let result = &check["result"];
        assert_eq!(
            result["changed_by_service"],
            json!(["Letter.docx"]),
            "{u}: {result}"
        );
        assert_eq!(
            result["service_rewrites"][0]["path"], "Letter.docx",
            "{u}: {result}"
        );
    }
}
