//! What a newcomer sees when the first command goes wrong: a config file
//! that is not there, a port that is taken. Each message is one line that
//! names the thing and says what to do, each cause once.

use crate::wardgate;

/// `wardgate <args> <path>` exits 2 with exactly one stderr line: the path
/// and the operating system's reason, no source snippet.
fn unreadable(args: &[&str], path: &std::path::Path, reason: &str) {
    let out = wardgate().args(args).arg(path).output().unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(
        stderr,
        format!(
            "{}: cannot read the configuration file: {reason}\n",
            path.display()
        ),
        "{args:?}"
    );
}

#[test]
fn a_missing_config_file_is_one_line_with_the_os_reason() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let reason = "No such file or directory (os error 2)";
    unreadable(&["run", "--config"], &missing, reason);
    unreadable(&["check-config"], &missing, reason);
    unreadable(&["bridge", "--config"], &missing, reason);
    unreadable(&["replay", "--input", "-", "--config"], &missing, reason);
    // A directory where the file should be.
    unreadable(
        &["run", "--config"],
        dir.path(),
        "Is a directory (os error 21)",
    );
}

#[test]
fn the_demo_on_a_taken_port_says_so_once_and_suggests_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let out = wardgate()
        .args(["demo", "--listen", &addr.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // The URL is printed only once the page listens: here, never.
    assert!(!stdout.contains("open http"), "{stdout}");
    let expected = format!(
        "cannot listen on {addr}: address already in use — another wardgate or program uses it; try `--listen 127.0.0.1:{}`",
        addr.port() + 1
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert_eq!(
        stderr
            .to_lowercase()
            .matches("address already in use")
            .count(),
        1,
        "each cause once:\n{stderr}"
    );
    drop(taken);
}
