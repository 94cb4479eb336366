//! A tiny W3C WebDriver client over reqwest, driving headless Chromium through `chromedriver`.
//! Only what the admin center tests use: navigate, find, click, type, read, run a script,
//! screenshots and the browser console log.

use base64::Engine;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The W3C web element identifier key.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(candidates: &[&str]) -> Option<PathBuf> {
    for c in candidates {
        let p = Path::new(c);
        if p.is_absolute() {
            if p.exists() {
                return Some(p.to_path_buf());
            }
            continue;
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let full = dir.join(c);
                if full.exists() {
                    return Some(full);
                }
            }
        }
    }
    None
}

/// The Chromium binary itself (Debian's /usr/bin/chromium is a wrapper script) and chromedriver.
/// Missing ones fail the test with the way to install them: a browser test must not pass by
/// skipping.
pub fn browser_programs() -> (PathBuf, PathBuf) {
    let chromium = std::env::var_os("TENANTRY_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| {
            find_program(&[
                "/usr/lib/chromium/chromium",
                "chromium",
                "chromium-browser",
                "google-chrome",
            ])
        });
    let driver = std::env::var_os("TENANTRY_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| find_program(&["chromedriver"]));
    match (chromium, driver) {
        (Some(c), Some(d)) => (c, d),
        (c, d) => panic!(
            "the admin center tests need Chromium and chromedriver (found chromium: {c:?}, chromedriver: {d:?}). \
             Install them with scripts/test, or: apt-get install chromium chromium-driver \
             (the packages are listed in scripts/deps/web.apt)"
        ),
    }
}

pub struct Browser {
    http: reqwest::Client,
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
    /// Chromium's process id, to stop it should ending the session fail.
    browser_pid: Option<u64>,
    /// Console messages of level SEVERE seen so far.
    pub console_errors: Vec<String>,
}

pub struct Element(pub String);

impl Browser {
    pub async fn start() -> Browser {
        let (chromium, driver_path) = browser_programs();
        let port = tenantry_testkit::net::free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver_path.display()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "chromedriver did not answer on {base} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1000".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium.display().to_string(), "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let mut browser = Browser {
            http,
            driver,
            base,
            session: String::new(),
            _profile: profile,
            browser_pid: None,
            console_errors: Vec::new(),
        };
        let v = browser
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        browser.session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"))
            .to_string();
        browser.browser_pid = v["value"]["capabilities"]["goog:processID"].as_u64();
        browser
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(b) = body {
            req = req.json(&b);
        } else if method == reqwest::Method::POST {
            req = req.json(&json!({}));
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"));
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            panic!("WebDriver {method} {path} answered {status}: {v}");
        }
        v
    }

    async fn try_call(&self, method: reqwest::Method, path: &str, body: Value) -> Option<Value> {
        let resp = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .json(&body)
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{}", self.session, rest)
    }

    pub async fn goto(&mut self, url: &str) {
        self.call(
            reqwest::Method::POST,
            &self.s("/url"),
            Some(json!({"url": url})),
        )
        .await;
        self.collect_console().await;
    }

    pub async fn url(&self) -> String {
        let v = self.call(reqwest::Method::GET, &self.s("/url"), None).await;
        v["value"].as_str().unwrap_or_default().to_string()
    }

    pub async fn try_find(&self, css: &str) -> Option<Element> {
        let v = self
            .try_call(
                reqwest::Method::POST,
                &self.s("/element"),
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        v["value"][ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_string()))
    }

    /// Waits up to 10 s for an element (pages are swapped in by htmx asynchronously).
    pub async fn find(&self, css: &str) -> Element {
        let started = Instant::now();
        loop {
            if let Some(e) = self.try_find(css).await {
                return e;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let url = self.url().await;
                panic!("no element {css} on {url} after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs an element command, finding the element again if htmx replaced it meanwhile.
    async fn on_element(&self, css: &str, command: &str, body: Value) {
        let started = Instant::now();
        loop {
            let e = self.find(css).await;
            let path = self.s(&format!("/element/{}/{command}", e.0));
            if self
                .try_call(reqwest::Method::POST, &path, body.clone())
                .await
                .is_some()
            {
                return;
            }
            if started.elapsed() > Duration::from_secs(10) {
                // Once more, to fail with WebDriver's own explanation.
                self.call(reqwest::Method::POST, &path, Some(body)).await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        self.on_element(css, "click", json!({})).await;
    }

    pub async fn clear(&self, css: &str) {
        self.on_element(css, "clear", json!({})).await;
    }

    pub async fn type_in(&self, css: &str, text: &str) {
        self.on_element(css, "value", json!({"text": text})).await;
    }

    /// Replaces the value of a field by typing.
    pub async fn fill(&self, css: &str, text: &str) {
        self.clear(css).await;
        self.type_in(css, text).await;
    }

    /// The rendered text of the element (waiting for it to exist).
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await;
        let v = self
            .script(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                json!([css]),
            )
            .await;
        v.as_str().unwrap_or_default().trim().to_string()
    }

    /// Waits up to 10 s until the element's text contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let started = Instant::now();
        loop {
            if self.try_find(css).await.is_some() {
                let t = self.text(css).await;
                if t.contains(needle) {
                    return t;
                }
                if started.elapsed() > Duration::from_secs(10) {
                    panic!("{css} says {t:?}, expected it to contain {needle:?}");
                }
            } else if started.elapsed() > Duration::from_secs(10) {
                let url = self.url().await;
                panic!("no element {css} on {url} (waiting for {needle:?})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn script(&self, js: &str, args: Value) -> Value {
        let v = self
            .call(
                reqwest::Method::POST,
                &self.s("/execute/sync"),
                Some(json!({"script": js, "args": args})),
            )
            .await;
        v["value"].clone()
    }

    /// Chooses the option of a `<select>` whose text contains `text`.
    pub async fn select(&self, css: &str, text: &str) {
        self.find(css).await;
        let ok = self
            .script(
                "const s = document.querySelector(arguments[0]);
                 const o = [...s.options].find(o => o.text.includes(arguments[1]));
                 if (!o) return false; s.value = o.value;
                 s.dispatchEvent(new Event('change', {bubbles: true})); return true;",
                json!([css, text]),
            )
            .await;
        assert_eq!(ok, json!(true), "no option {text:?} in {css}");
    }

    /// Presses a key on whatever has the focus (e.g. `"\u{E004}"`, Tab).
    pub async fn press(&self, key: &str) {
        self.call(
            reqwest::Method::POST,
            &self.s("/actions"),
            Some(
                json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]}),
            ),
        )
        .await;
    }

    /// Follows the link whose text is exactly `text`.
    pub async fn click_link(&self, text: &str) {
        let ok = self
            .script(
                "const a = [...document.querySelectorAll('a')].find(a => a.textContent.trim() === arguments[0]);
                 if (!a) return false; a.click(); return true;",
                json!([text]),
            )
            .await;
        assert_eq!(ok, json!(true), "no link {text:?}");
    }

    pub async fn set_window(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            &self.s("/window/rect"),
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves a PNG of the viewport as `name` in the test output folder.
    pub async fn screenshot(&mut self, name: &str) -> PathBuf {
        let v = self
            .call(reqwest::Method::GET, &self.s("/screenshot"), None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["value"].as_str().unwrap_or_default())
            .expect("screenshot is base64");
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        // Every page shot is also checked: each form control has a label a screen reader reads.
        let unlabelled = self
            .script(
                "return [...document.querySelectorAll('input, select, textarea')]
                   .filter(e => e.type !== 'hidden' && e.labels.length === 0 && !e.getAttribute('aria-label'))
                   .map(e => e.outerHTML.slice(0, 120));",
                json!([]),
            )
            .await;
        assert_eq!(
            unlabelled,
            json!([]),
            "form controls without a label on {name}"
        );
        let path = super::output_dir().join(name);
        std::fs::write(&path, png).expect("write the screenshot");
        self.collect_console().await;
        path
    }

    /// Reads the browser console log (chromedriver's log endpoint) and keeps the errors.
    pub async fn collect_console(&mut self) {
        let v = self
            .call(
                reqwest::Method::POST,
                &self.s("/se/log"),
                Some(json!({"type": "browser"})),
            )
            .await;
        for entry in v["value"].as_array().into_iter().flatten() {
            if entry["level"].as_str() == Some("SEVERE") {
                self.console_errors
                    .push(entry["message"].as_str().unwrap_or_default().to_string());
            }
        }
    }

    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A failed test still must not leave Chromium or chromedriver behind: end the session
        // (which closes the browser), then stop the driver.
        if !self.session.is_empty() {
            use std::io::{Read, Write};
            let addr = self.base.trim_start_matches("http://").to_string();
            if let Ok(mut conn) = std::net::TcpStream::connect(&addr) {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    conn,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let _ = conn.read_to_end(&mut Vec::new());
            }
            self.session.clear();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        if let Some(pid) = self.browser_pid {
            // Still there only if the session could not be ended; it is the browser this test started.
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
    }
}
