//! Helpers for end-to-end tests: real processes on free loopback ports.
//! Everything here waits on readiness (a port accepting connections, a file
//! holding lines), never on a fixed sleep, and every wait is bounded.

use std::io::{Read as _, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

pub mod soak;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(60);

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` every 20 ms until it returns `Some`, failing after [`WAIT`].
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until something accepts TCP connections on the port.
pub fn wait_port(port: u16) {
    wait_for(&format!("port {port} to accept connections"), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    });
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).expect("signal the child");
}

/// Waits for a child to exit, bounded.
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    wait_for("the process to exit", || child.try_wait().ok().flatten())
}

/// The workspace's root directory (shipped configuration lives there).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the workspace")
        .to_owned()
}

/// The `wardgate` binary of this workspace's target directory. `cargo test
/// --workspace` builds it (the gateway's own integration tests need it).
pub fn wardgate_bin() -> PathBuf {
    target_bin("wardgate")
}

/// The `wardgate-sim` binary built next to the test (or example) binary.
pub fn sim_bin() -> PathBuf {
    target_bin("wardgate-sim")
}

/// A workspace binary in the same target profile as the running test or
/// example (`target/<profile>/deps/it-<hash>` or
/// `target/<profile>/examples/<name>` → `target/<profile>/<name>`).
fn target_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join(name))
        .expect("target directory");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p {name}` or `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// Starts `wardgate-sim load` with `args` (`--devices N`, ...), its
/// configuration fragment written to `fragment`, and waits for its `READY`
/// line: every simulated device is up and the fragment complete. The
/// caller kills it.
pub fn start_load(args: &[&str], fragment: &Path) -> Child {
    use std::io::BufRead as _;
    let mut sim = Command::new(sim_bin())
        .arg("load")
        .args(args)
        .arg("--config-out")
        .arg(fragment)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wardgate-sim load");
    let mut ready = String::new();
    std::io::BufReader::new(sim.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("READY line");
    assert!(ready.starts_with("READY"), "{ready}");
    sim
}

/// Starts a server and waits until it accepts connections on `port`. A
/// server that exits first (the port still held by the instance just stopped)
/// is started again, within [`WAIT`].
fn spawn_listening(port: u16, mut command: impl FnMut() -> Command) -> Child {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut child = command().spawn().expect("start server");
        let listening = wait_for(
            &format!("a server on port {port} to listen or exit"),
            || {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(true);
                }
                child.try_wait().ok().flatten().map(|_| false)
            },
        );
        if listening {
            return child;
        }
        assert!(
            Instant::now() < deadline,
            "no server could listen on port {port}"
        );
        // A retry pause, not a readiness wait: let the old socket go.
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn find(program: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{program} is not installed: run `scripts/test`, which installs the test peers (or `apt-get install {program}`)"
    );
}

/// Builds a server's command line for (port, data directory).
type ServerCommand = Box<dyn Fn(u16, &Path) -> Command>;

/// A server process of the tests on a free loopback port, with a data
/// directory that survives its restarts. Stopped with SIGTERM (so it saves its
/// state), killed when dropped.
pub struct Server {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    command: ServerCommand,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Server {
    fn start(command: impl Fn(u16, &Path) -> Command + 'static) -> Self {
        let mut s = Self {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            command: Box::new(command),
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let (port, dir) = (self.port, self.dir.path().to_owned());
        let command = &self.command;
        self.child = Some(spawn_listening(port, || command(port, &dir)));
    }

    /// Stops the server (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, Signal::SIGTERM);
            wait_exit(&mut c);
        }
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its data directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A mosquitto broker, with persistence so a restart keeps sessions and
/// queued messages.
#[derive(Debug)]
pub struct Mosquitto;

impl Mosquitto {
    /// Anyone may connect and publish anything.
    pub fn start() -> Server {
        Server::start(|port, dir| Self::command(port, dir, "allow_anonymous true"))
    }

    /// Clients must authenticate as one of `accounts` (name, password), and
    /// may publish and read only what the ACL file `acl` allows them.
    pub fn start_secured(acl: &Path, accounts: &[(&str, &str)]) -> Server {
        let acl = acl.to_owned();
        let accounts: Vec<(String, String)> = accounts
            .iter()
            .map(|(u, p)| ((*u).to_owned(), (*p).to_owned()))
            .collect();
        Server::start(move |port, dir| {
            let passwords = dir.join("passwd");
            if !passwords.exists() {
                for (i, (user, password)) in accounts.iter().enumerate() {
                    let mut c = Command::new(find("mosquitto_passwd"));
                    if i == 0 {
                        c.arg("-c");
                    }
                    let status = c
                        .arg("-b")
                        .arg(&passwords)
                        .args([user, password])
                        .stdout(Stdio::null())
                        .status()
                        .expect("run mosquitto_passwd");
                    assert!(status.success(), "mosquitto_passwd {user}");
                }
            }
            Self::command(
                port,
                dir,
                &format!(
                    "allow_anonymous false\npassword_file {}\nacl_file {}",
                    passwords.display(),
                    acl.display()
                ),
            )
        })
    }

    fn command(port: u16, dir: &Path, access: &str) -> Command {
        let conf = dir.join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf).expect("conf");
        writeln!(
            f,
            "per_listener_settings false\nlistener {port} 127.0.0.1\n{access}\npersistence true\npersistence_location {dir}/\nautosave_interval 1\nmax_queued_messages 0\nset_tcp_nodelay true\nlog_dest stderr\nlog_type error",
            dir = dir.display()
        )
        .expect("write conf");
        let mut c = Command::new(find("mosquitto"));
        c.arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }
}

/// A victoria-metrics server: it accepts the InfluxDB v2 write API at
/// `/api/v2/write` and answers queries at `/api/v1/export`.
#[derive(Debug)]
pub struct VictoriaMetrics;

impl VictoriaMetrics {
    pub fn start() -> Server {
        Server::start(|port, dir| {
            let mut c = Command::new(find("victoria-metrics"));
            c.arg(format!("-httpListenAddr=127.0.0.1:{port}"))
                .arg(format!("-storageDataPath={}", dir.display()))
                .arg("-retentionPeriod=100y")
                .arg("-search.disableCache")
                .arg("-loggerLevel=ERROR")
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            c
        })
    }
}

/// A `wardgate run` process with its configuration in a temporary directory.
#[derive(Debug)]
pub struct Gateway {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Gateway {
    /// Writes `config` (where `{dir}` stands for the temporary directory) and
    /// starts `wardgate run` on it.
    pub fn start(config: &str) -> Self {
        Self::start_with_secrets(config, &[])
    }

    /// As [`Gateway::start`], with secret files (name, content) written
    /// first into the directory, private to the user as wardgate requires.
    pub fn start_with_secrets(config: &str, secrets: &[(&str, &str)]) -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut g = Self { dir, child: None };
        for (name, content) in secrets {
            let path = g.path(name);
            std::fs::write(&path, content).expect("write secret");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .expect("make the secret private");
        }
        let text = config.replace("{dir}", &g.dir.path().display().to_string());
        std::fs::write(g.config_path(), text).expect("write config");
        g.spawn();
        g
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .expect("log file");
        let child = Command::new(wardgate_bin())
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start wardgate");
        self.child = Some(child);
    }

    /// Stops with SIGINT and asserts a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, Signal::SIGINT);
            let status = wait_exit(&mut c);
            assert!(
                status.success(),
                "wardgate exited with {status}; log:\n{}",
                self.log()
            );
        }
    }

    /// Kills with SIGKILL: no draining, no flushing.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, Signal::SIGKILL);
            wait_exit(&mut c);
        }
    }

    pub fn restart(&mut self) {
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// The running process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The whole lines of a file (none when it does not exist yet); a last
/// line still being written is left out.
pub fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The writer may be in the middle of a line: only whole lines count.
    let whole = text.rfind('\n').map_or("", |end| &text[..end]);
    whole.lines().map(str::to_owned).collect()
}

/// An MQTT subscriber with a persistent session (QoS 1), collecting every
/// message it receives on a background thread.
#[derive(Debug)]
pub struct Subscriber {
    rx: mpsc::Receiver<(String, Vec<u8>, bool)>,
}

impl Subscriber {
    /// Connects, subscribes to `filter` and returns once the broker confirmed
    /// the subscription.
    pub fn start(port: u16, client_id: &str, filter: &str) -> Self {
        Self::start_as(port, client_id, filter, None)
    }

    /// As [`Subscriber::start`], authenticated as (account, password).
    pub fn start_as(
        port: u16,
        client_id: &str,
        filter: &str,
        account: Option<(&str, &str)>,
    ) -> Self {
        let mut opts = rumqttc::MqttOptions::new(client_id, "127.0.0.1", port);
        if let Some((user, password)) = account {
            opts.set_credentials(user, password);
        }
        opts.set_clean_session(false)
            .set_keep_alive(Duration::from_secs(5))
            .set_max_packet_size(8 * 1024 * 1024, 8 * 1024 * 1024);
        let (client, mut connection) = rumqttc::Client::new(opts, 64);
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let filter = filter.to_owned();
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = client.subscribe(filter.clone(), rumqttc::QoS::AtLeastOnce);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        let _ = ready_tx.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if tx
                            .send((p.topic.clone(), p.payload.to_vec(), p.retain))
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(_) => {}
                    // The broker may be restarted by the test: retry quietly.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready_rx.recv_timeout(WAIT).expect("subscription confirmed");
        Self { rx }
    }

    /// Every message received so far: (topic, payload, retain flag).
    pub fn drain(&self) -> Vec<(String, Vec<u8>, bool)> {
        self.rx.try_iter().collect()
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub fn http(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to wardgate");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series of the gateway's `/metrics`, written exactly as
/// `series` (name and labels in the order the gateway writes them).
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}
