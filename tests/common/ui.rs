//! The rig of the web UI tests (HTTP and browser): the real daemon with the simulator on a pty,
//! the fake Provet (with a client for the side panel), a signed-in person made with the CLI.

use std::path::PathBuf;

use smshub::provet::custom_integration::expected_hash;
use smshub::testbed::fake_provet::{FakeOptions, FakeProvet};

use super::{Daemon, HttpReply, Sim, TestDir, http_with};

pub const USER: &str = "anna";
pub const PASSWORD: &str = "correct horse battery staple";
pub const SALT: &str = "panel-salt-0123456789abcdef";
/// The client the fake Provet knows, with two numbers (the second preferred).
pub const CLIENT_NUMBERS: [&str; 2] = ["+358401111111", "+358402222222"];

pub struct UiRig {
    pub fake: FakeProvet,
    pub dir: TestDir,
    pub sim: Sim,
    pub cfg: PathBuf,
    pub daemon: Daemon,
    pub client_id: i64,
    pub patient_id: i64,
    // Last: the fake's server runs on it.
    _rt: tokio::runtime::Runtime,
}

impl UiRig {
    /// Starts everything; `extra` goes into `[custom_integration]` (e.g. `frame_ancestors`).
    pub fn start(extra: &str) -> UiRig {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let fake = rt.block_on(FakeProvet::start(FakeOptions::default())).unwrap();
        let client_id =
            fake.add_client("Anna", "Virtanen", false, &[(CLIENT_NUMBERS[0], false), (CLIENT_NUMBERS[1], true)]);
        let patient_id = fake.add_patient_of(client_id, "Rex");
        let dir = TestDir::new();
        let sim = Sim::start(dir.path(), &[]);
        let cfg = dir.config(&format!(
            "[[provet]]\nname = \"clinic\"\nbase_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"\n\
             poll_interval_s = 3600\nretry_initial_s = 1\nretry_max_s = 2\nrequest_timeout_s = 3\nallow_insecure_http = true\n\n\
             [[modem]]\nname = \"main\"\ndevice = \"{}\"\nsend_timeout_s = 20\n\n\
             [outbound]\nretry_initial_s = 1\nretry_max_s = 2\n\n\
             [custom_integration]\nsalt = \"{SALT}\"\n{extra}\n",
            fake.base_url(),
            fake.token_url(),
            fake.options().client_id,
            fake.options().client_secret,
            sim.link.display(),
        ));
        let out =
            dir.smshub_with_stdin(&cfg, &["user", "add", USER, "--password-stdin"], format!("{PASSWORD}\n").as_bytes());
        assert_eq!(out.status.code(), Some(0), "{}", super::stderr(&out));
        let daemon = Daemon::start(&cfg);
        UiRig { fake, dir, sim, cfg, daemon, client_id, patient_id, _rt: rt }
    }

    /// `http://127.0.0.1:<admin port>`.
    pub fn admin_origin(&self) -> String {
        format!("http://{}", self.daemon.admin)
    }

    /// `http://127.0.0.1:<public port>`.
    pub fn public_origin(&self) -> String {
        format!("http://{}", self.daemon.addr)
    }

    /// The origin of the fake Provet (what the panel's `frame-ancestors` allows by default).
    pub fn provet_origin(&self) -> String {
        format!("http://{}", self.fake.addr())
    }

    /// Signs in over HTTP; returns the `name=value` of the session cookie.
    pub fn login(&self) -> String {
        let body = format!("username={USER}&password={}", PASSWORD.replace(' ', "+"));
        let reply = self.post(None, "/login", &body);
        assert_eq!(reply.status, 303, "{reply:?}");
        reply.header("set-cookie").unwrap().split(';').next().unwrap().to_string()
    }

    pub fn get(&self, cookie: Option<&str>, path: &str) -> HttpReply {
        let headers: Vec<(&str, &str)> = cookie.map(|c| vec![("Cookie", c)]).unwrap_or_default();
        http_with(&self.daemon.admin, "GET", path, &headers, b"")
    }

    /// A form POST from the admin listener's own origin.
    pub fn post(&self, cookie: Option<&str>, path: &str, body: &str) -> HttpReply {
        let origin = self.admin_origin();
        let mut headers: Vec<(&str, &str)> =
            vec![("Origin", &origin), ("Content-Type", "application/x-www-form-urlencoded")];
        if let Some(c) = cookie {
            headers.push(("Cookie", c));
        }
        http_with(&self.daemon.admin, "POST", path, &headers, body.as_bytes())
    }

    /// A side-panel URL (path and query) for `kind` (`client` or `patient`) and `id`, made as
    /// Provet makes it, `age_s` seconds ago (negative: in the future).
    pub fn panel_path(&self, kind: &str, id: i64, age_s: i64) -> String {
        let ts = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 - age_s)
            .to_string();
        format!("/provet/clinic/panel/{kind}?id={id}&timestamp={ts}&verification={}", expected_hash(&ts, SALT))
    }
}

/// The value of the hidden field `name` in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page.find(&marker).unwrap_or_else(|| panic!("no field {name} in {page}")) + marker.len();
    page[at..].split('"').next().unwrap().to_string()
}

/// `application/x-www-form-urlencoded` value.
pub fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
