//! The Debian package, end to end: `scripts/package.sh` builds it from the
//! binaries of this `cargo test` run; its contents and control fields are
//! checked; real `dpkg` installs it into a throwaway root (never the
//! machine's), with this machine's installed packages as the dependency
//! database; the installed `tack@.service` is verified and enabled there
//! (`systemd-analyze`, `systemctl --root`); then the unit's `ExecStart` for
//! the instance `lab`, paths rebased into the throwaway root, runs in the
//! lab's appliance namespace on the shipped lab profile: a client gets an
//! answer through the VIP, the unit's `ExecReload` reloads it, and SIGTERM
//! (the unit's stop) ends it cleanly. A reinstall and a purge leave the
//! administrator's profile alone.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::lab::{LAB_LOCK, Lab, root};
use common::{Tack, TempDir, tack_bin};

/// The environment systemd gives a system service (no variables of the test's).
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs a command, panicking with its output unless it succeeds.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dpkg` acting on the throwaway root: its own admin directory and log, and
/// maintainer scripts run without chroot (the root holds no shell) with
/// `DPKG_ROOT` set, as they must support.
fn dpkg(root: &Path, log: &Path) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()))
        .arg(format!("--log={}", log.display()))
        .arg("--force-script-chrootless");
    c
}

/// The package's status in the throwaway root's database.
fn status(root: &Path, package: &str) -> String {
    let out = Command::new("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f=${Status}", package])
        .output()
        .expect("dpkg-query");
    stdout(&out)
}

/// The names of the packages in a Depends field (alternatives included).
fn depends_names(depends: &str) -> BTreeSet<String> {
    depends
        .split([',', '|'])
        .filter_map(|d| d.split_whitespace().next())
        .map(|n| n.split(':').next().unwrap_or(n).to_string())
        .collect()
}

/// The packages of this machine that provide the shared libraries `bin` needs directly.
fn library_packages(bin: &Path) -> BTreeSet<String> {
    let dynamic = stdout(&run(Command::new("readelf").arg("-d").arg(bin)));
    let needed: Vec<String> = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| Some(l.split_once('[')?.1.split_once(']')?.0.to_string()))
        .collect();
    assert!(!needed.is_empty(), "{} needs no library?", bin.display());
    let ldd = stdout(&run(Command::new("ldd").arg(bin)));
    needed
        .iter()
        .map(|lib| {
            let path = ldd
                .lines()
                .find_map(|l| {
                    // `NAME => PATH (ADDR)`, or `PATH (ADDR)` for the dynamic loader.
                    let l = l.trim();
                    match l.split_once(" => ") {
                        Some((name, rest)) if name == lib => {
                            rest.split_whitespace().next().map(str::to_string)
                        }
                        Some(_) => None,
                        None => {
                            let path = l.split_whitespace().next()?;
                            path.ends_with(&format!("/{lib}")).then(|| path.to_string())
                        }
                    }
                })
                .unwrap_or_else(|| panic!("ldd does not resolve {lib}:\n{ldd}"));
            let real = std::fs::canonicalize(&path).expect("library path");
            // dpkg knows a library by the path it installed (/lib or /usr/lib).
            let owner = [PathBuf::from(&path), real.clone()]
                .iter()
                .chain(
                    real.strip_prefix("/usr")
                        .ok()
                        .map(|p| Path::new("/").join(p))
                        .as_slice(),
                )
                .find_map(|p| {
                    let o = Command::new("dpkg").arg("-S").arg(p).output().ok()?;
                    o.status.success().then(|| stdout(&o))
                })
                .unwrap_or_else(|| panic!("no package of this machine owns {lib} ({path})"));
            let pkg = owner.split(':').next().unwrap_or("").trim().to_string();
            assert!(!pkg.is_empty(), "dpkg -S {path}: {owner}");
            pkg
        })
        .collect()
}

/// The values of a directive (`KEY=`) in a unit file, in order.
fn directive(unit: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// A unit command line for instance `instance`, split as systemd splits it
/// (the units quote nothing), with the specifiers `%i`/`%I` substituted and
/// every absolute path that exists in `root` (or whose directory does)
/// rebased into it; other paths (`/bin/kill`) stay the machine's.
fn unit_command(line: &str, instance: &str, root: &Path) -> Vec<String> {
    assert!(
        !line.contains(['"', '\'', '\\']),
        "the test splits unquoted command lines only: {line}"
    );
    let line = line.replace("%i", instance).replace("%I", instance);
    assert!(!line.contains('%'), "unknown specifier in {line}");
    line.split_whitespace()
        .map(|a| {
            if let Some(rel) = a.strip_prefix('/') {
                let inside = root.join(rel);
                let dir_inside = inside.parent().is_some_and(|d| d.is_dir() && d != root);
                if inside.exists() || dir_inside {
                    return inside.display().to_string();
                }
            }
            a.to_string()
        })
        .collect()
}

/// `dpkg-deb --contents`: (path without the leading `.`, mode, owner) of each entry.
fn contents(deb: &Path) -> Vec<(String, String, String)> {
    stdout(&run(Command::new("dpkg-deb").arg("--contents").arg(deb)))
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert!(f.len() >= 6, "dpkg-deb --contents line {l:?}");
            let path = f[5].trim_start_matches('.').to_string();
            (path, f[0].to_string(), f[1].to_string())
        })
        .collect()
}

#[test]
fn debian_package_installs_and_its_unit_serves_the_lab() {
    let _g = LAB_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    common::require_root();
    let t0 = Instant::now();
    let tmp = TempDir::new();
    let ws = root();

    // --- Build, from this run's binaries.
    let bin_dir = tack_bin().parent().expect("target dir").to_path_buf();
    let built = run(Command::new(ws.join("scripts/package.sh"))
        .args(["--profile", "debug", "--bin-dir"])
        .arg(&bin_dir)
        .arg("--out")
        .arg(tmp.path("out")));
    let deb = PathBuf::from(stdout(&built).lines().last().expect("package path").trim());
    let arch = stdout(&run(Command::new("dpkg").arg("--print-architecture")))
        .trim()
        .to_string();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        deb.file_name().and_then(|n| n.to_str()),
        Some(format!("tack_{version}_{arch}.deb").as_str())
    );
    println!("package built in {:?}: {}", t0.elapsed(), deb.display());

    // --- Contents: what the brief lists, all root-owned, no file in /etc.
    let listed = contents(&deb);
    for (path, _, owner) in &listed {
        assert_eq!(owner, "root/root", "{path} owned by {owner}");
        if path.starts_with("/etc/") {
            assert!(
                path == "/etc/" || path == "/etc/tack/",
                "file in /etc: {path}"
            );
        }
    }
    let mode_of = |p: &str| {
        listed
            .iter()
            .find(|(path, _, _)| path == p)
            .map(|(_, m, _)| m.clone())
            .unwrap_or_else(|| panic!("{p} not in the package"))
    };
    for b in ["tack", "tackctl", "tack-proxy"] {
        assert_eq!(mode_of(&format!("/usr/bin/{b}")), "-rwxr-xr-x");
        assert_eq!(
            mode_of(&format!("/usr/share/man/man1/{b}.1.gz")),
            "-rw-r--r--"
        );
    }
    for unit in ["tack@.service", "tack-proxy@.service"] {
        assert_eq!(
            mode_of(&format!("/lib/systemd/system/{unit}")),
            "-rw-r--r--"
        );
    }
    assert!(mode_of("/etc/tack/").starts_with('d'));
    // keepalived's notify FIFO reader for the elected scheduler.
    assert_eq!(mode_of("/usr/share/tack/vrrp-notify.sh"), "-rwxr-xr-x");
    let mut docs = vec![
        "README.md".to_string(),
        "copyright".into(),
        "changelog.gz".into(),
    ];
    let mut examples = Vec::new();
    for (dir, list, ext) in [
        ("docs", &mut docs, "md"),
        ("configs", &mut examples, "yaml"),
    ] {
        for e in std::fs::read_dir(ws.join(dir)).expect(dir) {
            let name = e.expect("entry").file_name().to_string_lossy().into_owned();
            if name.ends_with(&format!(".{ext}")) {
                list.push(name);
            }
        }
    }
    assert!(examples.iter().any(|e| e == "lab.yaml"));
    for d in &docs {
        assert_eq!(mode_of(&format!("/usr/share/doc/tack/{d}")), "-rw-r--r--");
    }
    for e in &examples {
        assert_eq!(
            mode_of(&format!("/usr/share/tack/examples/{e}")),
            "-rw-r--r--"
        );
    }

    // --- Control fields and scripts.
    let field = |name: &str| {
        stdout(&run(Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .arg(name)))
        .trim()
        .to_string()
    };
    assert_eq!(field("Package"), "tack");
    assert_eq!(field("Version"), version);
    assert_eq!(field("Architecture"), arch);
    assert!(field("Description").starts_with("DPDK load-balancing appliance"));
    let depends = field("Depends");
    let dep_names = depends_names(&depends);
    assert!(dep_names.contains("dpdk"), "Depends: {depends}");
    assert!(depends.contains("libc6 (>="), "Depends: {depends}");
    // The plugins EAL loads, which no binary links.
    for plugin in ["librte-mempool-ring", "librte-net-tap"] {
        assert!(
            dep_names.iter().any(|d| d.starts_with(plugin)),
            "{plugin} not in Depends: {depends}"
        );
    }
    // Every library a binary links comes from a package in Depends.
    for b in ["tack", "tackctl", "tack-proxy"] {
        for pkg in library_packages(&bin_dir.join(b)) {
            assert!(
                dep_names.contains(&pkg),
                "{b} needs {pkg}, not in Depends: {depends}"
            );
        }
    }
    let control = tmp.path("control");
    run(Command::new("dpkg-deb")
        .arg("--control")
        .arg(&deb)
        .arg(&control));
    assert!(
        !control.join("conffiles").exists(),
        "the package ships no conffile"
    );
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(control.join(script)));
    }
    // Every file's checksum is listed, and matches.
    let sums = std::fs::read_to_string(control.join("md5sums")).expect("md5sums");
    let files = listed.iter().filter(|(_, m, _)| m.starts_with('-')).count();
    assert_eq!(sums.lines().count(), files, "md5sums: {sums}");

    // --- Install into a throwaway root. Its dpkg database holds this
    // machine's entries of the packages Depends names, so dpkg checks the
    // dependencies against what is really installed here.
    let r = tmp.path("root");
    let admin = r.join("var/lib/dpkg");
    for d in ["info", "updates", "triggers"] {
        std::fs::create_dir_all(admin.join(d)).expect("admin dir");
    }
    let mut db = String::new();
    for name in &dep_names {
        let entry = Command::new("dpkg-query")
            .args(["-s", name])
            .output()
            .expect("dpkg-query");
        if entry.status.success() {
            db.push_str(&stdout(&entry));
            db.push('\n');
            std::fs::write(admin.join(format!("info/{name}.list")), "").expect("list");
        }
    }
    std::fs::write(admin.join("status"), db).expect("status");
    std::fs::write(admin.join("available"), "").expect("available");
    let log = tmp.path("dpkg.log");
    run(dpkg(&r, &log).arg("--install").arg(&deb));
    assert_eq!(status(&r, "tack"), "install ok installed");
    for b in ["tack", "tackctl", "tack-proxy"] {
        let v = run(Command::new(r.join("usr/bin").join(b)).arg("--version"));
        assert!(
            stdout(&v).contains(version),
            "{b} --version: {}",
            stdout(&v)
        );
    }
    // The manual page of tack carries `tack run --help` (its --socket).
    let man = run(Command::new("sh").arg("-c").arg(format!(
        "gzip -dc {} | grep -c -- '--socket'",
        r.join("usr/share/man/man1/tack.1.gz").display()
    )));
    assert!(stdout(&man).trim() != "0");

    // The administrator's profile, from the shipped example, and the instance enabled.
    let unit_path = r.join("lib/systemd/system/tack@.service");
    let unit = std::fs::read_to_string(&unit_path).expect("installed unit");
    let profile = r.join("etc/tack/lab.yaml");
    std::fs::copy(r.join("usr/share/tack/examples/lab.yaml"), &profile).expect("copy example");
    let profile_text = std::fs::read(&profile).expect("profile");
    run(Command::new("systemctl")
        .arg(format!("--root={}", r.display()))
        .args(["enable", "tack@lab.service"]));
    let wants = r.join("etc/systemd/system/multi-user.target.wants/tack@lab.service");
    assert_eq!(
        std::fs::read_link(&wants).expect("systemctl enable made the link"),
        Path::new("/lib/systemd/system/tack@.service")
    );
    // systemd's own checks of the installed units (directives, and that the
    // commands are executables), on copies whose /usr/bin/ is the root's:
    // `systemd-analyze --root` would need a whole system in the root.
    let vdir = tmp.path("verify");
    std::fs::create_dir_all(&vdir).expect("verify dir");
    for u in ["tack@.service", "tack-proxy@.service"] {
        let text = std::fs::read_to_string(r.join("lib/systemd/system").join(u)).expect(u);
        let bin = format!("{}/", r.join("usr/bin").display());
        std::fs::write(vdir.join(u), text.replace("/usr/bin/", &bin)).expect("unit copy");
    }
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(vdir.join("tack@lab.service"))
        .arg(vdir.join("tack-proxy@proxy.service"))
        .output()
        .expect("systemd-analyze");
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&verify),
        String::from_utf8_lossy(&verify.stderr)
    );

    // A reinstall (dpkg's upgrade path) keeps the profile and the link.
    run(dpkg(&r, &log).arg("--install").arg(&deb));
    assert_eq!(status(&r, "tack"), "install ok installed");
    assert_eq!(std::fs::read(&profile).expect("profile"), profile_text);
    assert!(wants.is_symlink());

    // --- The unit, as systemd would run `tack@lab`.
    for key in ["Restart", "LimitMEMLOCK", "RuntimeDirectoryPreserve"] {
        assert_eq!(directive(&unit, key).len(), 1, "{key} in the unit");
    }
    assert_eq!(directive(&unit, "Restart")[0], "on-failure");
    assert_eq!(directive(&unit, "LimitMEMLOCK")[0], "infinity");
    assert_eq!(directive(&unit, "RuntimeDirectoryPreserve")[0], "yes");
    assert_eq!(directive(&unit, "KillSignal"), ["SIGTERM"]);
    // RuntimeDirectory=: systemd creates it (inside the root here) before ExecStart.
    for d in directive(&unit, "RuntimeDirectory") {
        std::fs::create_dir_all(r.join("run").join(d)).expect("runtime dir");
    }
    let exec_start = directive(&unit, "ExecStart");
    assert_eq!(exec_start.len(), 1, "one ExecStart");
    let argv = unit_command(&exec_start[0], "lab", &r);
    assert_eq!(Path::new(&argv[0]), r.join("usr/bin/tack"), "{argv:?}");
    assert!(argv.contains(&profile.display().to_string()), "{argv:?}");
    let socket = r.join("run/tack/lab.sock");
    assert!(argv.contains(&socket.display().to_string()), "{argv:?}");

    let lab = Lab::up();
    let mut cmd = Command::new("ip");
    // LimitMEMLOCK is not applied: raising it needs CAP_SYS_RESOURCE, which
    // a container may lack, and the lab profile pins no hugepages.
    cmd.args(["netns", "exec", &lab.ns("lb")])
        .args(&argv)
        .env_clear()
        .env("PATH", SYSTEMD_PATH);
    let mut tack = Tack::start_command(cmd);

    // A client through the VIP (the lab profile checks its servers over HTTP
    // first: rise 2 at 1 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        match lab.curl("c1", "http://10.100.0.10/") {
            Ok(b) if !b.trim().is_empty() => break b,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "no answer through the VIP: {other:?}"
                );
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    };
    let server = body.split_whitespace().next().unwrap_or("");
    assert!(["s1", "s2", "s3"].contains(&server), "answer {body:?}");
    // The installed tackctl on the socket the unit named.
    let services = run(Command::new(r.join("usr/bin/tackctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("services"));
    assert!(
        stdout(&services).contains("web-sticky"),
        "{}",
        stdout(&services)
    );

    // `systemctl reload`: ExecReload with $MAINPID.
    let exec_reload = directive(&unit, "ExecReload");
    assert_eq!(exec_reload.len(), 1, "one ExecReload");
    let reload = exec_reload[0].replace("$MAINPID", &tack.pid().to_string());
    let reload = unit_command(&reload, "lab", &r);
    run(Command::new(&reload[0]).args(&reload[1..]));
    let line = tack.wait_for_line("tack: reload", Duration::from_secs(10));
    assert!(
        line.contains("SIGHUP") && !line.contains("refused"),
        "{line}"
    );
    let again = lab
        .curl("c1", "http://10.100.0.10/")
        .expect("answer after the reload");
    assert!(!again.trim().is_empty());

    // `systemctl stop`: KillSignal=SIGTERM; a clean exit (0, which
    // Restart=on-failure leaves stopped) with the final counters.
    let report = tack.stop();
    assert!(report.contains("mbufs in use after stop: 0"), "{report}");
    drop(lab);

    // tack-proxy@.service's command checks the shipped proxy example.
    let proxy_unit = std::fs::read_to_string(r.join("lib/systemd/system/tack-proxy@.service"))
        .expect("tack-proxy unit");
    std::fs::copy(
        r.join("usr/share/tack/examples/proxy.yaml"),
        r.join("etc/tack/proxy.yaml"),
    )
    .expect("copy proxy example");
    let proxy_start = directive(&proxy_unit, "ExecStart");
    assert_eq!(proxy_start.len(), 1);
    let argv = unit_command(&proxy_start[0], "proxy", &r);
    assert_eq!(Path::new(&argv[0]), r.join("usr/bin/tack-proxy"));
    let checked = run(Command::new(&argv[0]).args(&argv[1..]).arg("--check"));
    assert!(stdout(&checked).contains("configuration is valid"));

    // --- Purge: the package's files and the enable link go, profiles stay.
    run(dpkg(&r, &log).arg("--purge").arg("tack"));
    assert!(
        !status(&r, "tack").contains("installed"),
        "{}",
        status(&r, "tack")
    );
    assert!(!r.join("usr/bin/tack").exists());
    assert!(!unit_path.exists());
    assert!(
        !wants.exists() && !wants.is_symlink(),
        "enable link left behind"
    );
    assert_eq!(std::fs::read(&profile).expect("profile kept"), profile_text);
    println!("package test done in {:?}", t0.elapsed());
}
