//! `tack run` and `tack check` on bad profiles, files and sockets: one line
//! naming the problem, a non-zero exit, no panic; and what `tack run` leaves
//! behind and reports (EAL's runtime directory, reloads).

mod common;

use std::process::Command;

use common::{TempDir, tack_bin};

const GOOD: &str = "\
eal:
  hugepages: false
  memory_mb: 128
  lcores: '0@0,1@0'
runtime:
  idle: backoff
mempool:
  mbufs: 1023
  cache: 32
ports:
  - name: lan
    device: net_null0
    addresses: [10.0.0.1/24]
workers:
  - lcore: 1
    port: lan
";

/// Runs `tack run --config` on `profile` text; returns (exit code, stderr).
fn run(profile: &str) -> (i32, String) {
    let dir = TempDir::new();
    let path = dir.path("p.yaml");
    std::fs::write(&path, profile).unwrap();
    run_path(path.to_str().expect("utf-8 path"))
}

fn assert_one_line_error(profile: &str, expect: &[&str]) {
    let (code, stderr) = run(profile);
    assert_ne!(code, 0, "a bad profile must fail: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line of error, got:\n{stderr}");
    for e in expect {
        assert!(
            lines[0].contains(e),
            "error {:?} should mention {e:?}",
            lines[0]
        );
    }
}

#[test]
fn bad_field_value() {
    assert_one_line_error(
        &GOOD.replace("memory_mb: 128", "memory_mb: -5"),
        &["eal.memory_mb", ":3:"],
    );
}

#[test]
fn unknown_key() {
    assert_one_line_error(
        &GOOD.replace("    addresses:", "    adresses:"),
        &["unknown field `adresses`", ":13:"],
    );
}

#[test]
fn worker_on_an_unknown_port() {
    assert_one_line_error(
        &GOOD.replace("    port: lan", "    port: wan"),
        &["workers[0].port", "no port named `wan`", ":16:"],
    );
}

#[test]
fn missing_file() {
    let (code, stderr) = run_path("/nonexistent/tack.yaml");
    assert_ne!(code, 0);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot read profile"), "{stderr}");
}

/// Runs `tack run --config PATH`; returns (exit code, stderr), checking it did not panic.
fn run_path(path: &str) -> (i32, String) {
    let out = Command::new(tack_bin())
        .args(["run", "--config", path])
        .output()
        .expect("spawn tack");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "tack panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn vdev_that_does_not_exist() {
    common::require_root();
    assert_one_line_error(
        &GOOD.replace("device: net_null0", "device: net_nosuchdriver0"),
        &["port `lan`", "net_nosuchdriver0"],
    );
}

#[test]
fn check_prints_the_eal_arguments() {
    let dir = TempDir::new();
    let path = dir.path("p.yaml");
    std::fs::write(&path, GOOD).unwrap();
    let out = Command::new(tack_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("--no-huge") && text.contains("--lcores=0@0,1@0"),
        "{text}"
    );
}

#[test]
fn every_shipped_profile_checks() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // proxy*.yaml are tack-proxy's configurations, checked by its own tests.
        if !name.ends_with(".yaml") || name.starts_with("proxy") {
            continue;
        }
        let out = Command::new(tack_bin())
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "configs/ holds the lab and bare-metal profiles"
    );
}

/// Runs `tack check --config PATH`; returns (exit code, stderr).
fn check_path(path: &std::path::Path) -> (i32, String) {
    let out = Command::new(tack_bin())
        .args(["check", "--config"])
        .arg(path)
        .output()
        .expect("spawn tack");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "tack panicked: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

/// A profile is read up to 16 MiB: an endless or huge file is refused with
/// one line and exit code 2 instead of filling the memory.
#[test]
fn huge_profiles_are_refused() {
    let dir = TempDir::new();
    let big = dir.path("big.yaml");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len((16 << 20) + 1).unwrap();
    drop(file);
    for path in [std::path::Path::new("/dev/zero"), big.as_path()] {
        let (code, stderr) = check_path(path);
        assert_eq!(code, 2, "{}: {stderr}", path.display());
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("{}: ", path.display()))
                && stderr.contains("larger than 16 MiB"),
            "{stderr}"
        );
    }
    let (code, stderr) = run_path("/dev/zero");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("larger than 16 MiB"), "{stderr}");
}

/// `--socket` never deletes what is not a stale socket, and never creates
/// directories: `tack run` refuses with one line and exit code 1 before it
/// starts anything.
#[test]
fn socket_path_that_is_not_a_stale_socket() {
    let dir = TempDir::new();
    let profile = dir.path("p.yaml");
    std::fs::write(&profile, GOOD).unwrap();
    let file = dir.path("precious.txt");
    std::fs::write(&file, "keep me").unwrap();
    let missing = dir.path("no/such/dir/tack.sock");
    for (socket, says) in [
        (&file, "is a regular file, not a socket"),
        (&missing, "does not exist"),
    ] {
        let out = Command::new(tack_bin())
            .args(["run", "--config"])
            .arg(&profile)
            .arg("--socket")
            .arg(socket)
            .output()
            .expect("spawn tack");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("management socket") && stderr.contains(says),
            "{stderr}"
        );
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    assert!(!dir.path("no").exists(), "no directory is created");
}

/// EAL's runtime directory of the process's own file prefix
/// (`/var/run/dpdk/tack<PID>`) is removed at exit, after a clean stop and
/// after a failed start.
#[test]
fn eal_runtime_directory_is_removed_at_exit() {
    common::require_root();
    let dir = TempDir::new();
    let profile = dir.path("p.yaml");
    let socket = dir.path("tack.sock");
    std::fs::write(
        &profile,
        format!("{GOOD}management:\n  socket: {}\n", socket.display()),
    )
    .unwrap();
    let tack = common::Tack::start_plain(&profile);
    let runtime_dir = std::path::PathBuf::from(format!("/var/run/dpdk/tack{}", tack.pid()));
    assert!(runtime_dir.is_dir(), "EAL made {}", runtime_dir.display());
    tack.stop();
    assert!(!runtime_dir.exists(), "{} is left", runtime_dir.display());

    // A start that fails after EAL made the directory.
    std::fs::write(
        &profile,
        GOOD.replace("device: net_null0", "device: net_nosuchdriver0"),
    )
    .unwrap();
    let child = Command::new(tack_bin())
        .args(["run", "--config"])
        .arg(&profile)
        .arg("--socket")
        .arg(&socket)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn tack");
    let runtime_dir = std::path::PathBuf::from(format!("/var/run/dpdk/tack{}", child.id()));
    let out = child.wait_with_output().expect("wait tack");
    assert_eq!(out.status.code(), Some(1));
    assert!(!runtime_dir.exists(), "{} is left", runtime_dir.display());
}

/// Every reload is reported on `tack`'s output with what asked for it,
/// applied or refused with its cause: through `tackctl` as through SIGHUP;
/// so are the other changes made through `tackctl`.
#[test]
fn reloads_through_tackctl_are_reported() {
    common::require_root();
    let dir = TempDir::new();
    let profile = dir.path("p.yaml");
    let socket = dir.path("tack.sock");
    let good = format!("{GOOD}management:\n  socket: {}\n", socket.display());
    std::fs::write(&profile, &good).unwrap();
    let mut tack = common::Tack::start_plain(&profile);
    common::lab::tackctl(&socket, "reload");
    let line = tack.wait_for_line("tack: reload (tackctl)", std::time::Duration::from_secs(10));
    assert!(line.contains("configuration epoch 1"), "{line}");

    std::fs::write(&profile, good.replace("memory_mb: 128", "memory_mb: many")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tackctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("reload")
        .output()
        .expect("run tackctl");
    assert!(!out.status.success());
    let line = tack.wait_for_line(
        "tack: reload refused (tackctl)",
        std::time::Duration::from_secs(10),
    );
    assert!(line.contains(":3: eal.memory_mb: invalid type"), "{line}");

    std::fs::write(&profile, &good).unwrap();
    let line = tack.reload_outcome();
    assert!(
        line.starts_with("tack: reload (SIGHUP): configuration epoch 2"),
        "{line}"
    );

    // Other changes through tackctl are reported too; queries are not.
    common::lab::tackctl(&socket, "status");
    common::lab::tackctl(&socket, "connections flush");
    let line = tack.wait_for_line("tack: tackctl", std::time::Duration::from_secs(10));
    assert_eq!(line, "tack: tackctl connections flush: applied");
    let out = Command::new(env!("CARGO_BIN_EXE_tackctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["sticky", "flush", "nope"])
        .output()
        .expect("run tackctl");
    assert!(!out.status.success());
    let line = tack.wait_for_line("refused: no service", std::time::Duration::from_secs(10));
    assert_eq!(
        line,
        "tack: tackctl sticky flush nope: refused: no service named `nope`"
    );
    let report = tack.stop();
    assert!(!report.contains("tack: tackctl status"), "{report}");
}

/// CPUs the machine does not have are refused by `tack run` before EAL
/// (which would print its whole usage text), with one line and exit code 1;
/// `tack check` passes them: the profile may be for another machine.
#[test]
fn lcores_on_cpus_the_machine_lacks() {
    let dir = TempDir::new();
    let path = dir.path("p.yaml");
    std::fs::write(&path, GOOD.replace("'0@0,1@0'", "'0@0,1@1023'")).unwrap();
    let out = Command::new(tack_bin())
        .args(["run", "--config"])
        .arg(&path)
        .output()
        .expect("spawn tack");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("eal.lcores") && stderr.contains("no CPU 1023"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no usage text");
    let (code, stderr) = check_path(&path);
    assert_eq!(code, 0, "{stderr}");
}

/// `tack steering-program` compiles the lab's two-worker profile (no
/// privileges needed without --attach) and refuses a port that is not in it.
#[test]
fn steering_program_of_the_lab_profile() {
    let lab = common::lab::root().join("configs/lab-xdp.yaml");
    let out = Command::new(tack_bin())
        .args(["steering-program", "--config"])
        .arg(&lab)
        .output()
        .expect("run tack");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with("port `lan`: steering program of ") && stdout.contains(" instructions"),
        "{stdout}"
    );
    let out = Command::new(tack_bin())
        .args(["steering-program", "--port", "wan", "--config"])
        .arg(&lab)
        .output()
        .expect("run tack");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no port `wan`"));
}
