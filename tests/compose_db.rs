//! The course's database app under `berth compose`: MariaDB from Debian's archive and a web
//! front end (busybox httpd running a CGI script that uses MariaDB's client), both built by
//! `berth build` FROM the debootstrap-made Debian image (tests/apps/course-db). The web service
//! waits for the database's healthcheck (`mariadb-admin ping`), reaches it by its service
//! name, and is checked from outside over HTTP on its published port; the rows survive
//! `down`/`up` in the named volume, and `down -v` leaves nothing of the project.
//!
//! The two built images are kept in the test cache (`BERTH_TEST_CACHE`) as one docker-archive
//! named after a hash of the app's files, so that only the first run builds them (about two
//! minutes here, most of it apt downloading); later runs `berth load` them. Root only.

mod engine_support;

use engine_support::*;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The app's files in the source tree.
fn app_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/course-db")
}

/// A hash of the app's files (paths, modes and contents): the built images' tag and their
/// cache file's name.
fn app_key(dir: &Path) -> String {
    fn walk(dir: &Path, rel: &Path, h: &mut sha2::Sha256) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            use std::os::unix::fs::PermissionsExt;
            let path = e.path();
            let r = rel.join(e.file_name());
            let meta = e.metadata().unwrap();
            h.update(format!(
                "{}\0{:o}\0",
                r.display(),
                meta.permissions().mode()
            ));
            if meta.is_dir() {
                walk(&path, &r, h);
            } else {
                h.update(std::fs::read(&path).unwrap());
            }
        }
    }
    let mut h = sha2::Sha256::new();
    walk(dir, Path::new(""), &mut h);
    // The base image: a new version of its script makes another image.
    h.update(std::fs::read(repo_dir().join("scripts/mkimage-debian.sh")).unwrap());
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

struct App {
    scratch: Scratch,
    dir: PathBuf,
    key: String,
    port: u16,
}

impl App {
    fn compose(&self, args: &[&str]) -> Outcome {
        let mut c = self.scratch.command(&["compose", "-p", "course"]);
        c.args(args)
            .current_dir(&self.dir)
            .env("APP_TAG", &self.key)
            .env("WEB_PORT", self.port.to_string());
        run_within(&c, std::time::Duration::from_secs(900))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert_eq!(out.code, 0, "compose {args:?}: {out:?}");
        out.stdout
    }

    fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.scratch.berth_ok(&["container", "inspect", name]);
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
    }

    fn list(&self, what: &[&str]) -> Vec<String> {
        self.scratch
            .berth_ok(what)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The items page, from outside (the published port on 127.0.0.1).
    fn items(&self, query: &str) -> String {
        let out = http_get(self.port, &format!("/cgi-bin/items{query}"));
        // The CGI script's own headers end with a bare "\n\n".
        let out = out.replace("\r\n", "\n");
        out.split_once("\n\n").map_or("", |(_, b)| b).to_string()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v"]);
    }
}

fn names(body: &str) -> Vec<&str> {
    body.lines()
        .filter(|l| !l.starts_with("server: "))
        .collect()
}

#[test]
fn course_db_app_built_from_debian_packages_survives_down_up() {
    if !is_root() {
        eprintln!("SKIPPED: compose tests need root");
        return;
    }
    let t0 = Instant::now();
    let scratch = Scratch::new("compose-db");
    let dir = scratch.path("course-db");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(app_dir())
        .arg(&dir)
        .status()
        .unwrap();
    assert!(copied.success());
    let key = app_key(&dir);
    let cached = test_cache_dir().join(format!("course-db-{key}.tar"));
    let images = [
        format!("berth-tests/course-db:{key}"),
        format!("berth-tests/course-web:{key}"),
    ];
    let from_cache = cached.exists();
    if from_cache {
        let loaded = berth_load(&scratch, &cached);
        assert_eq!(loaded.len(), 2, "{}: {loaded:?}", cached.display());
    } else if !load_debian(&scratch) {
        return;
    }
    let app = App {
        scratch,
        dir,
        key,
        port: std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(),
    };

    // Up: built (from the cache after the first run), the web service started once the
    // database is healthy.
    let t_up = Instant::now();
    app.ok(&["up", "-d"]);
    eprintln!(
        "compose up -d ({}): {:?}",
        if from_cache {
            "images from the cache"
        } else {
            "images built"
        },
        t_up.elapsed()
    );
    // At once (the health log keeps the last five checks): a passing check of the database
    // came before the web service's start.
    let db = app.inspect("course-db-1");
    assert_eq!(db["State"]["Health"]["Status"], "healthy", "{db:#}");
    let healthy_at = db["State"]["Health"]["Log"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ExitCode"] == 0)
        .and_then(|l| l["End"].as_str())
        .expect("a passing health check")
        .to_string();
    let web = app.inspect("course-web-1");
    let web_started = web["State"]["StartedAt"].as_str().unwrap();
    assert!(
        *web_started >= *healthy_at,
        "web started at {web_started}, before the database was healthy at {healthy_at}"
    );
    if !from_cache {
        std::fs::create_dir_all(test_cache_dir()).unwrap();
        let part = cached.with_extension("part");
        let mut args = vec!["save", "-o", part.to_str().unwrap()];
        args.extend(images.iter().map(String::as_str));
        app.scratch.berth_ok(&args);
        std::fs::rename(&part, &cached).unwrap();
    }
    // The database is MariaDB from Debian's archive.
    let v = app.scratch.berth_ok(&[
        "container",
        "exec",
        "course-db-1",
        "dpkg-query",
        "-W",
        "-f=${Version}",
        "mariadb-server",
    ]);
    assert!(v.contains("deb12"), "mariadb-server version {v:?}");

    // The web front end writes and reads through the database, by its service name.
    assert_eq!(names(&app.items("")), Vec::<&str>::new());
    app.items("?add=apple");
    let body = app.items("?add=pear");
    let db_id = db["Id"].as_str().unwrap();
    assert!(
        body.starts_with(&format!("server: {}", &db_id[..12])),
        "{body:?}"
    );
    assert_eq!(names(&body), ["apple", "pear"]);
    // What is not a plain name never reaches the SQL.
    assert!(app
        .items("?add=x%27);DROP%20TABLE%20items;--")
        .contains("bad name"));

    // down keeps the named volume; up again finds the rows.
    let vol = "course_dbdata".to_string();
    app.ok(&["down"]);
    assert_eq!(
        app.list(&["container", "ls", "-a", "-q"]),
        Vec::<String>::new()
    );
    assert!(app.list(&["volume", "ls", "-q"]).contains(&vol));
    let t_up = Instant::now();
    app.ok(&["up", "-d", "--wait"]);
    eprintln!("compose up -d --wait (warm): {:?}", t_up.elapsed());
    assert_ne!(app.inspect("course-db-1")["Id"], db["Id"], "recreated");
    assert_eq!(names(&app.items("")), ["apple", "pear"]);

    // down -v: nothing of the project is left (containers, network, volume, published port).
    let net = app
        .scratch
        .berth_ok(&["network", "inspect", "course_default"]);
    let net: serde_json::Value = serde_json::from_str(&net).unwrap();
    let bridge = net[0]["Options"]["com.docker.network.bridge.name"]
        .as_str()
        .expect("the network's bridge")
        .to_string();
    let t_down = Instant::now();
    app.ok(&["down", "-v"]);
    eprintln!("compose down -v: {:?}", t_down.elapsed());
    assert_eq!(
        app.list(&["container", "ls", "-a", "-q"]),
        Vec::<String>::new()
    );
    assert!(!app.list(&["volume", "ls", "-q"]).contains(&vol));
    assert!(
        !app.scratch
            .berth(&["network", "inspect", "course_default"])
            .status
            .success(),
        "the project's network is left"
    );
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "bridge {bridge} left"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", app.port)).is_err());
    let table = std::process::Command::new("nft")
        .args(["list", "table", "ip", "berth"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        !table.contains(&format!(" {} ", app.port)),
        "port {} left in berth's table:\n{table}",
        app.port
    );
    eprintln!("the whole test: {:?}", t0.elapsed());
}
