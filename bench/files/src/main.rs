//! Files-engine benchmark: tenantry vs rclone between two Apache mod_dav servers, beside a local
//! `cp -r` of the same tree. Not a test: run it by hand (see README.md beside this file).
//!
//! It generates its own corpus (many small office-like files, some of 50 MB and more, one big
//! file, nested non-ASCII folders, modification times spread over years), then reports wall
//! time, MB/s, peak RSS, files whose content and mtime match, and the time of a no-op re-run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use tenantry_files::webdav::propfind::encode_path;
use tenantry_testkit::apache::Apache;
use tenantry_testkit::tree::{fingerprint, Node};
use tenantry_testkit::wsgidav::{WsgiDav, WsgiMtime};
use tenantry_testkit::{PASSWORD, USER};

/// The `tenantry-files` binary: the executable beside this one (README.md builds both into
/// the same folder).
fn tenantry_files_bin() -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .with_file_name("tenantry-files")
}

struct Args {
    small_files: usize,
    large_files: usize,
    big_file_mb: u64,
    /// Which runs to make (`cp`, `curl`, `tenantry`, `rclone`, `mtime`).
    tools: Vec<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        small_files: 3200,
        large_files: 36,
        big_file_mb: 2048,
        tools: vec![
            "cp".into(),
            "curl".into(),
            "tenantry".into(),
            "rclone".into(),
            "mtime".into(),
        ],
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for w in v.chunks(2) {
        let n = w.get(1).and_then(|x| x.parse().ok());
        match (w[0].as_str(), n) {
            ("--small-files", Some(n)) => a.small_files = n as usize,
            ("--large-files", Some(n)) => a.large_files = n as usize,
            ("--big-file-mb", Some(n)) => a.big_file_mb = n,
            ("--tools", _) if w.len() == 2 => {
                a.tools = w[1].split(',').map(str::to_string).collect()
            }
            _ => {
                eprintln!(
                    "usage: files-bench [--small-files N] [--large-files N] [--big-file-mb MB] \
                     [--tools cp,curl,tenantry,rclone,mtime]"
                );
                std::process::exit(2);
            }
        }
    }
    a
}

const FOLDERS: &[&str] = &[
    "Verträge/2019/Q1",
    "Verträge/2019/Q2",
    "Verträge/2020",
    "Finanzen & Controlling/Jahresabschluss 2021",
    "日本語/報告書/第1四半期",
    "Ünïcødé Földer/Präsentationen",
    "Projects/Alpha (final)/Specs #1",
    "Projects/Beta/Design 100%",
    "HR/Bewerbungen/Señor Núñez",
    "Marketing/Кампании/2022",
    "Archiv",
];
const EXT: &[&str] = &["docx", "xlsx", "pptx", "pdf", "txt", "msg", "png"];

/// Writes the corpus: returns (files, bytes).
fn generate(root: &Path, a: &Args) -> anyhow::Result<(u64, u64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut files = 0u64;
    let mut bytes = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut write = |rel: String, size: u64, rng: &mut rand::rngs::StdRng| -> anyhow::Result<()> {
        let p = root.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap())?;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p)?);
        let mut left = size;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            rng.fill(&mut buf[..n]);
            std::io::Write::write_all(&mut f, &buf[..n])?;
            left -= n as u64;
        }
        let f = f.into_inner()?;
        // Modification times spread from 2005 to 2024.
        let secs = rng.gen_range(1_104_537_600u64..1_735_689_600);
        f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs))?;
        files += 1;
        bytes += size;
        Ok(())
    };
    for i in 0..a.small_files {
        let dir = FOLDERS[i % FOLDERS.len()];
        // Office-like sizes: mostly 10–300 KB, a tail up to 2 MB.
        let size = if rng.gen_bool(0.9) {
            rng.gen_range(10_000..300_000)
        } else {
            rng.gen_range(300_000..2_000_000)
        };
        let ext = EXT[i % EXT.len()];
        write(
            format!("{dir}/Dokument {i:04} – Entwurf.{ext}"),
            size,
            &mut rng,
        )?;
    }
    for i in 0..a.large_files {
        let dir = FOLDERS[(i * 3) % FOLDERS.len()];
        let size = rng.gen_range(50_000_000..64_000_000);
        write(
            format!("{dir}/Aufnahme {i:02} (Rohschnitt).mp4"),
            size,
            &mut rng,
        )?;
    }
    if a.big_file_mb > 0 {
        write(
            "Archiv/Sicherung 2019 – vollständig.iso".into(),
            a.big_file_mb << 20,
            &mut rng,
        )?;
    }
    for d in ["Leer/Ordner ohne Inhalt", "空のフォルダ"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    Ok((files, bytes))
}

struct Run {
    name: String,
    wall: Duration,
    peak_rss_kb: u64,
    ok: bool,
}

/// Gives every run the same start: earlier runs' dirty pages flushed, their copies dropped from
/// the page cache (as root), and the source tree read back in, so that each tool reads a cached
/// source and writes into free memory. Without this, whichever tool runs after `cp -r` pays for
/// reclaiming the pages `cp` filled (measured: 7.6 s alone, 13.2 s right after `cp -r`).
fn level_the_field(source: &Path) -> anyhow::Result<()> {
    Command::new("sync").status()?;
    if std::env::var_os("BENCH_NO_DROP").is_some()
        || std::fs::write("/proc/sys/vm/drop_caches", "1").is_err()
    {
        eprintln!("(page cache not dropped between runs: timings may favour earlier runs)");
    }
    let mut buf = vec![0u8; 1 << 20];
    for f in tree(source)?.1 {
        let mut f = std::fs::File::open(source.join(f))?;
        while std::io::Read::read(&mut f, &mut buf)? > 0 {}
    }
    Ok(())
}

/// Runs a command, sampling its peak RSS (VmHWM) from /proc while it runs.
fn timed(name: &str, source: &Path, cmd: &mut Command) -> anyhow::Result<Run> {
    level_the_field(source)?;
    let start = Instant::now();
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(s) = std::fs::read_to_string(&status_path) {
            if let Some(kb) = s
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
            {
                peak = peak.max(kb);
            }
        }
        if let Some(st) = child.try_wait()? {
            break st;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall = start.elapsed();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        eprintln!(
            "{name} failed ({status}): {}",
            err.chars().take(2000).collect::<String>()
        );
    }
    Ok(Run {
        name: name.into(),
        wall,
        peak_rss_kb: peak,
        ok: status.success(),
    })
}

fn compare(src: &BTreeMap<String, Node>, dst: &Path) -> (usize, usize, usize) {
    compare_under(src, "", dst)
}

/// Like `compare`, for the source files below `prefix` (a folder, `""` for all) copied to `dst`.
fn compare_under(src: &BTreeMap<String, Node>, prefix: &str, dst: &Path) -> (usize, usize, usize) {
    let fd = fingerprint(dst);
    let mut content = 0;
    let mut mtime = 0;
    let mut total = 0;
    for (k, n) in src.iter().filter(|(_, n)| !n.is_dir) {
        let k = match prefix {
            "" => k.as_str(),
            p => match k.strip_prefix(p).and_then(|r| r.strip_prefix('/')) {
                Some(r) => r,
                None => continue,
            },
        };
        total += 1;
        if let Some(m) = fd.get(k) {
            if m.sha256 == n.sha256 {
                content += 1;
                if m.mtime == n.mtime {
                    mtime += 1;
                }
            }
        }
    }
    (total, content, mtime)
}

/// A fresh, empty target server for one tool. Earlier copies are kept until the end: deleting
/// thousands of files makes ext4 scan its recently freed inodes on every creation for a while,
/// which would slow down whichever tool runs next.
fn fresh_target(keep: &mut Vec<Apache>) -> &Apache {
    let t = Apache::start();
    t.fix_owner();
    keep.push(t);
    keep.last().expect("just pushed")
}

/// The folders and files below `root`, as relative paths, parents before children.
fn tree(root: &Path) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    fn walk(
        root: &Path,
        dir: &Path,
        d: &mut Vec<String>,
        f: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            let rel = p.strip_prefix(root)?.to_string_lossy().into_owned();
            if p.is_dir() {
                d.push(rel);
                walk(root, &p, d, f)?;
            } else {
                f.push(rel);
            }
        }
        Ok(())
    }
    let (mut d, mut f) = (Vec::new(), Vec::new());
    walk(root, root, &mut d, &mut f)?;
    Ok((d, f))
}

/// The floor of the target server: `curl` PUTs the tree straight from local disk, 8 at a time,
/// with no source server and no hashing. What a client cannot beat on this target.
fn curl_floor(source: &Path, target: &Apache) -> anyhow::Result<Run> {
    let (dirs, files) = tree(source)?;
    let base = format!("http://127.0.0.1:{}/", target.port);
    let auth = format!("user = \"{USER}:{PASSWORD}\"\n");
    // Folders first (outside the timing): a PUT into a missing collection is refused.
    let cfg: Vec<String> = dirs
        .iter()
        .map(|d| {
            format!(
                "{auth}url = \"{base}{}/\"\nrequest = \"MKCOL\"\noutput = \"/dev/null\"\n",
                encode_path(d, false)
            )
        })
        .collect();
    let cfg = cfg.join("next\n");
    let mkcol = std::env::temp_dir().join(format!("files-bench-mkcol-{}", std::process::id()));
    std::fs::write(&mkcol, &cfg)?;
    let st = Command::new("curl")
        .arg("-sS")
        .arg("-K")
        .arg(&mkcol)
        .status()?;
    std::fs::remove_file(&mkcol)?;
    anyhow::ensure!(st.success(), "curl MKCOL failed");
    // The config file keeps the password out of the process list.
    let mut cfg = format!("{auth}parallel\nparallel-max = 8\nfail\n");
    for f in &files {
        cfg.push_str(&format!(
            "url = \"{base}{}\"\nupload-file = \"{}\"\noutput = \"/dev/null\"\n",
            encode_path(f, false),
            source.join(f).display()
        ));
    }
    let put = std::env::temp_dir().join(format!("files-bench-put-{}", std::process::id()));
    std::fs::write(&put, &cfg)?;
    let r = timed(
        "curl PUT (server floor)",
        source,
        Command::new("curl")
            .arg("-sS")
            .arg("-K")
            .arg(&put)
            .stdout(Stdio::null()),
    );
    std::fs::remove_file(&put)?;
    r
}

/// The password in rclone's obscured form, for its environment configuration.
fn rclone_obscure(password: &str) -> anyhow::Result<String> {
    let mut ob = Command::new("rclone")
        .args(["obscure", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("rclone installed")?;
    std::io::Write::write_all(&mut ob.stdin.take().expect("piped"), password.as_bytes())?;
    Ok(String::from_utf8(ob.wait_with_output()?.stdout)?
        .trim()
        .to_string())
}

fn rclone_remote(cmd: &mut Command, name: &str, port: u16, vendor: &str, obscured: &str) {
    let n = name.to_uppercase();
    cmd.env(format!("RCLONE_CONFIG_{n}_TYPE"), "webdav")
        .env(
            format!("RCLONE_CONFIG_{n}_URL"),
            format!("http://127.0.0.1:{port}/"),
        )
        .env(format!("RCLONE_CONFIG_{n}_VENDOR"), vendor)
        .env(format!("RCLONE_CONFIG_{n}_USER"), USER)
        .env(format!("RCLONE_CONFIG_{n}_PASS"), obscured);
}

fn main() -> anyhow::Result<()> {
    let args = parse_args();
    let tenantry = tenantry_files_bin();
    if !tenantry.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p tenantry-files -p tenantry-files-bench`",
            tenantry.display()
        );
    }
    let a = Apache::start();
    let mut targets = Vec::new();
    let work = tempfile::tempdir()?;
    eprintln!("generating corpus in {} ...", a.root().display());
    let (files, bytes) = generate(&a.root(), &args)?;
    a.fix_owner();
    let mb = bytes as f64 / 1e6;
    eprintln!("corpus: {files} files, {mb:.0} MB; fingerprinting ...");
    let src = fingerprint(&a.root());

    let mut rows = Vec::new();
    let want = |t: &str| args.tools.iter().any(|x| x == t);
    // 1. cp -r, local to local (the floor).
    if want("cp") {
        let cp_dst = work.path().join("cp");
        let r = timed(
            "cp -r (local)",
            &a.root(),
            Command::new("cp")
                .arg("-r")
                .arg(a.root())
                .arg(&cp_dst)
                .stdout(Stdio::null()),
        )?;
        rows.push((r, compare(&src, &cp_dst), None));
    }

    // 2. curl uploading from local disk: the target server's own limit.
    if want("curl") {
        let b = fresh_target(&mut targets);
        let r = curl_floor(&a.root(), b)?;
        rows.push((r, compare(&src, &b.root()), None));
    }

    // 3. tenantry, Apache -> Apache.
    if want("tenantry") {
        let b = fresh_target(&mut targets);
        let st = work.path().join("state");
        let mut t = Command::new(&tenantry);
        t.args([
            "migrate",
            "--json",
            "--source",
            &a.url(),
            "--target",
            &b.url(),
            "--state-dir",
        ])
        .arg(&st)
        .env("TENANTRY_SOURCE_PASSWORD", PASSWORD)
        .env("TENANTRY_TARGET_PASSWORD", PASSWORD);
        let report = work.path().join("tenantry-report.json");
        t.stdout(std::fs::File::create(&report)?);
        let r = timed("tenantry (8 parallel)", &a.root(), &mut t)?;
        let rep: serde_json::Value = serde_json::from_slice(&std::fs::read(&report)?)?;
        eprintln!(
            "tenantry: upload mode {}, mtimes {}, {} files copied",
            rep["upload_mode"], rep["mtime"], rep["copied_files"]
        );
        t.stdout(Stdio::null());
        let cmp = compare(&src, &b.root());
        let noop = timed("tenantry no-op", &a.root(), &mut t)?;
        rows.push((r, cmp, Some(noop.wall)));
    }

    // 4. rclone, Apache -> Apache, defaults and with 8 transfers.
    if want("rclone") {
        let obscured = rclone_obscure(PASSWORD)?;
        for (label, extra) in [
            ("rclone (defaults)", vec![]),
            ("rclone (--transfers 8)", vec!["--transfers", "8"]),
        ] {
            let b = fresh_target(&mut targets);
            let mut c = Command::new("rclone");
            c.stdout(Stdio::null());
            c.args(["copy", "src:", "dst:"]).args(&extra);
            rclone_remote(&mut c, "src", a.port, "other", &obscured);
            rclone_remote(&mut c, "dst", b.port, "other", &obscured);
            let r = timed(label, &a.root(), &mut c)?;
            let cmp = compare(&src, &b.root());
            let noop = timed("rclone no-op", &a.root(), &mut c)?;
            rows.push((r, cmp, Some(noop.wall)));
        }
    }

    // 5. Modification times where the target keeps them: one folder into wsgidav, which applies
    // `X-OC-Mtime` as Nextcloud and ownCloud do. rclone is told the target is ownCloud, so that
    // it sends the header too.
    let mut mtime_rows = Vec::new();
    if want("mtime") {
        let folder = FOLDERS[0];
        let obscured = rclone_obscure(PASSWORD)?;
        for tool in ["tenantry", "rclone"] {
            let w = WsgiDav::start(WsgiMtime::OcHeader);
            let mut c;
            if tool == "tenantry" {
                c = Command::new(&tenantry);
                c.args(["migrate", "--source"])
                    .arg(format!("{}{}", a.url(), encode_path(folder, false)))
                    .args(["--target", &w.url(), "--state-dir"])
                    .arg(work.path().join("state-mtime"))
                    .env("TENANTRY_SOURCE_PASSWORD", PASSWORD)
                    .env("TENANTRY_TARGET_PASSWORD", PASSWORD)
                    .stdout(Stdio::null());
            } else {
                c = Command::new("rclone");
                c.args(["copy", &format!("src:{folder}"), "dst:"])
                    .stdout(Stdio::null());
                rclone_remote(&mut c, "src", a.port, "other", &obscured);
                rclone_remote(&mut c, "dst", w.port, "owncloud", &obscured);
            }
            let r = timed(&format!("{tool} -> wsgidav"), &a.root(), &mut c)?;
            mtime_rows.push((r, compare_under(&src, folder, &w.root())));
        }
    }

    println!("\ncorpus: {files} files, {mb:.0} MB (Apache mod_dav -> Apache mod_dav on loopback; cp -r is local)\n");
    println!(
        "{:<24} {:>9} {:>9} {:>10} {:>14} {:>12} {:>10}",
        "tool", "wall s", "MB/s", "peak RSS", "content ok", "mtime ok", "no-op s"
    );
    let mut json = Vec::new();
    for (r, (total, content, mtime), noop) in &rows {
        let rate = mb / r.wall.as_secs_f64();
        println!(
            "{:<24} {:>9.1} {:>9.1} {:>7} MB {:>8}/{:<5} {:>6}/{:<5} {:>10}{}",
            r.name,
            r.wall.as_secs_f64(),
            rate,
            r.peak_rss_kb / 1024,
            content,
            total,
            mtime,
            total,
            noop.map(|d| format!("{:.2}", d.as_secs_f64()))
                .unwrap_or("-".into()),
            if r.ok { "" } else { "  (FAILED)" }
        );
        json.push(serde_json::json!({
            "tool": r.name, "wall_secs": r.wall.as_secs_f64(), "mb_per_s": rate,
            "peak_rss_mb": r.peak_rss_kb / 1024, "files": total, "content_match": content,
            "mtime_match": mtime, "noop_secs": noop.map(|d| d.as_secs_f64()), "ok": r.ok,
        }));
    }
    let mut mtime_json = Vec::new();
    if !mtime_rows.is_empty() {
        println!(
            "\nmodification times where the target keeps them: {} -> wsgidav (X-OC-Mtime)\n",
            FOLDERS[0]
        );
        println!(
            "{:<24} {:>9} {:>14} {:>12}",
            "tool", "wall s", "content ok", "mtime ok"
        );
        for (r, (total, content, mtime)) in &mtime_rows {
            println!(
                "{:<24} {:>9.1} {:>8}/{:<5} {:>6}/{:<5}{}",
                r.name,
                r.wall.as_secs_f64(),
                content,
                total,
                mtime,
                total,
                if r.ok { "" } else { "  (FAILED)" }
            );
            mtime_json.push(serde_json::json!({
                "tool": r.name, "wall_secs": r.wall.as_secs_f64(), "files": total,
                "content_match": content, "mtime_match": mtime, "ok": r.ok,
            }));
        }
    }
    let out =
        serde_json::json!({"files": files, "bytes": bytes, "runs": json, "mtime_runs": mtime_json});
    std::fs::write("files-bench.json", serde_json::to_string_pretty(&out)?)?;
    eprintln!("\nwritten files-bench.json");
    Ok(())
}
