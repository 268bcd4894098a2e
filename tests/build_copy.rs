//! COPY and ADD against real directories: the context (a directory or a tar stream),
//! `.dockerignore`, destination semantics, metadata, archives, URLs from a local HTTP server,
//! the cache key's content part, and hostile contexts, roots and archives checked against a
//! canary on the host.

use berth::build::context::{prepare, Context, ContextArg, DockerfileArg};
use berth::build::copy::{plan, CopyArgs, CopyPlan, Source};
use berth::build::ignore::Matcher;
use std::io::{Read, Write};
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A scratch directory removed when dropped (also on panic).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d =
            std::env::temp_dir().join(format!("berth-build-copy-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
    fn path(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
    /// A directory under the scratch, made.
    fn dir(&self, p: &str) -> PathBuf {
        let d = self.0.join(p);
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write(path: &Path, data: &[u8], mode: u32, mtime: i64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(path, mtime);
}

fn set_mtime(path: &Path, mtime: i64) {
    let t = nix::sys::time::TimeSpec::new(mtime, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// COPY/ADD words, as the executor hands them after expansion.
struct Copy {
    add: bool,
    sources: Vec<String>,
    dest: String,
    workdir: String,
    chown: Option<String>,
    chmod: Option<String>,
    checksum: Option<String>,
    heredocs: Vec<(String, Vec<u8>)>,
}

fn copy(sources: &[&str], dest: &str) -> Copy {
    Copy {
        add: false,
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.to_string(),
        workdir: "/".to_string(),
        chown: None,
        chmod: None,
        checksum: None,
        heredocs: Vec::new(),
    }
}

fn add(sources: &[&str], dest: &str) -> Copy {
    Copy {
        add: true,
        ..copy(sources, dest)
    }
}

impl Copy {
    fn args(&self) -> CopyArgs<'_> {
        CopyArgs {
            add: self.add,
            sources: &self.sources,
            dest: &self.dest,
            workdir: &self.workdir,
            chown: self.chown.as_deref(),
            chmod: self.chmod.as_deref(),
            checksum: self.checksum.as_deref(),
            heredocs: &self.heredocs,
        }
    }
    fn plan(&self, ctx: &Context, root: &Path) -> anyhow::Result<CopyPlan> {
        plan(&self.args(), Source::Context(ctx), root)
    }
    /// Plans and applies into `root`.
    fn run(&self, ctx: &Context, root: &Path) -> anyhow::Result<()> {
        self.plan(ctx, root)?.apply(root)
    }
}

fn err(r: anyhow::Result<()>) -> String {
    format!("{:#}", r.expect_err("the copy should fail"))
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The usual context: files of several modes and times, a directory tree, links.
fn sample_context(s: &Scratch) -> Context {
    let c = s.dir("ctx");
    write(&c.join("a.txt"), b"alpha", 0o640, 1_000_000);
    write(&c.join("b.txt"), b"beta", 0o755, 1_100_000);
    write(&c.join("d/x"), b"x", 0o600, 1_200_000);
    write(&c.join("d/sub/y"), b"y", 0o644, 1_300_000);
    std::fs::hard_link(c.join("d/x"), c.join("d/x-hard")).unwrap();
    symlink("sub/y", c.join("d/rel-link")).unwrap();
    symlink("d/sub", c.join("dlink")).unwrap();
    std::fs::set_permissions(c.join("d"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(c.join("d/sub"), std::fs::Permissions::from_mode(0o701)).unwrap();
    set_mtime(&c.join("d"), 1_400_000);
    Context::from_dir(&c).unwrap()
}

#[test]
fn files_and_directories_land_as_docker_puts_them() {
    let s = Scratch::new("semantics");
    let ctx = sample_context(&s);
    let root = s.dir("root");
    std::fs::create_dir_all(root.join("existing")).unwrap();

    copy(&["a.txt"], "/app/").run(&ctx, &root).unwrap();
    let f = root.join("app/a.txt");
    assert_eq!(std::fs::read(&f).unwrap(), b"alpha");
    assert_eq!(mode(&f), 0o640, "the mode is kept");
    let m = std::fs::metadata(&f).unwrap();
    assert_eq!(m.mtime(), 1_000_000, "the mtime is kept");
    if is_root() {
        assert_eq!((m.uid(), m.gid()), (0, 0));
    }
    assert_eq!(
        mode(&root.join("app")),
        0o755,
        "a missing parent is made 0755"
    );

    // No trailing slash and nothing there: the destination is the file.
    copy(&["a.txt"], "/renamed").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("renamed")).unwrap(), b"alpha");
    // An existing directory without a slash: the file goes inside.
    copy(&["b.txt"], "/existing").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("existing/b.txt")).unwrap(), b"beta");

    // A directory copies what it holds; its time goes to the destination, made 0755.
    copy(&["d"], "/dd").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("dd/x")).unwrap(), b"x");
    assert_eq!(std::fs::read(root.join("dd/sub/y")).unwrap(), b"y");
    assert!(!root.join("dd/d").exists());
    assert_eq!(mode(&root.join("dd")), 0o755);
    assert_eq!(
        mode(&root.join("dd/sub")),
        0o701,
        "directories inside keep their mode"
    );
    assert_eq!(
        std::fs::metadata(root.join("dd")).unwrap().mtime(),
        1_400_000
    );
    assert_eq!(
        std::fs::metadata(root.join("dd/sub/y")).unwrap().mtime(),
        1_300_000
    );
    // Hard links within one copy stay linked; symlinks inside stay symlinks.
    let x = std::fs::metadata(root.join("dd/x")).unwrap();
    assert_eq!(
        x.ino(),
        std::fs::metadata(root.join("dd/x-hard")).unwrap().ino()
    );
    assert_eq!(x.nlink(), 2);
    assert_eq!(
        std::fs::read_link(root.join("dd/rel-link")).unwrap(),
        Path::new("sub/y")
    );
    // A symlink named as the source is followed (inside the context): its target's contents.
    copy(&["dlink"], "/followed/").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("followed/y")).unwrap(), b"y");
    copy(&["dlink/y"], "/via-link").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("via-link")).unwrap(), b"y");

    // Relative to WORKDIR, and `.` as the destination.
    let mut c = copy(&["a.txt"], "rel/");
    c.workdir = "/work/dir".into();
    c.run(&ctx, &root).unwrap();
    assert!(root.join("work/dir/rel/a.txt").is_file());
    let mut c = copy(&["b.txt"], ".");
    c.workdir = "/work".into();
    c.run(&ctx, &root).unwrap();
    assert!(root.join("work/b.txt").is_file());

    // Several sources need a directory written with a slash.
    let e = err(copy(&["a.txt", "b.txt"], "/multi").run(&ctx, &root));
    assert!(
        e.contains("When using COPY with more than one source file, the destination must be a directory and end with a /"),
        "{e}"
    );
    copy(&["a.txt", "b.txt", "d"], "/multi/")
        .run(&ctx, &root)
        .unwrap();
    for p in ["multi/a.txt", "multi/b.txt", "multi/x", "multi/sub/y"] {
        assert!(root.join(p).exists(), "{p}");
    }

    // A missing source names the path.
    let e = err(copy(&["nope.txt"], "/").run(&ctx, &root));
    assert!(
        e.contains("COPY failed") && e.contains("\"nope.txt\": not found"),
        "{e}"
    );
}

#[test]
fn globs_match_per_component() {
    let s = Scratch::new("globs");
    let ctx = sample_context(&s);
    let root = s.dir("root");
    copy(&["*.txt"], "/g/").run(&ctx, &root).unwrap();
    assert!(root.join("g/a.txt").is_file() && root.join("g/b.txt").is_file());
    copy(&["d/*/y"], "/deep/").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("deep/y")).unwrap(), b"y");
    copy(&["[a]?txt"], "/class").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("class")).unwrap(), b"alpha");
    let e = err(copy(&["*.nomatch"], "/").run(&ctx, &root));
    assert!(
        e.contains("no source files were specified") && e.contains("*.nomatch"),
        "{e}"
    );
    let e = err(copy(&["*.txt"], "/onefile").run(&ctx, &root));
    assert!(e.contains("must be a directory and end with a /"), "{e}");
}

#[test]
fn chown_and_chmod() {
    if !is_root() {
        eprintln!("skipped: needs root to give files away");
        return;
    }
    let s = Scratch::new("chown");
    let ctx = sample_context(&s);
    let root = s.dir("root");
    write(
        &root.join("etc/passwd"),
        b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        0o644,
        0,
    );
    write(
        &root.join("etc/group"),
        b"root:x:0:\nstaff:x:50:\n",
        0o644,
        0,
    );
    let mut c = copy(&["d"], "/owned/by/app/");
    c.chown = Some("app".into());
    c.run(&ctx, &root).unwrap();
    for p in [
        "owned",
        "owned/by",
        "owned/by/app",
        "owned/by/app/x",
        "owned/by/app/sub/y",
    ] {
        let m = std::fs::symlink_metadata(root.join(p)).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1001), "{p}");
    }
    let link = std::fs::symlink_metadata(root.join("owned/by/app/rel-link")).unwrap();
    assert_eq!(
        (link.uid(), link.gid()),
        (1000, 1001),
        "symlinks are chowned themselves"
    );
    let mut c = copy(&["a.txt"], "/g");
    c.chown = Some("7:staff".into());
    c.chmod = Some("0755".into());
    c.run(&ctx, &root).unwrap();
    let m = std::fs::metadata(root.join("g")).unwrap();
    assert_eq!((m.uid(), m.gid(), mode(&root.join("g"))), (7, 50, 0o755));
    let mut c = copy(&["d"], "/sym/");
    c.chmod = Some("u=rwX,go=".into());
    c.run(&ctx, &root).unwrap();
    assert_eq!(mode(&root.join("sym/x")), 0o600);
    assert_eq!(mode(&root.join("sym/sub")), 0o700);
    let mut c = copy(&["a.txt"], "/x");
    c.chown = Some("ghost".into());
    let e = err(c.run(&ctx, &root));
    assert!(e.contains("unable to find user ghost"), "{e}");
}

#[test]
fn chown_names_come_from_inside_the_root() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let s = Scratch::new("passwdlink");
    let ctx = sample_context(&s);
    let root = s.dir("root");
    // The image's /etc is a symlink to the host's /etc: names must be looked up in
    // <root>/etc, here missing, never in the host's passwd (which has root).
    symlink("/etc", root.join("etc")).unwrap();
    let mut c = copy(&["a.txt"], "/x");
    c.chown = Some("root".into());
    let e = err(c.run(&ctx, &root));
    assert!(e.contains("unable to find user root"), "{e}");
    // A FIFO as the image's passwd file: refused, not read (which would block forever).
    let root2 = s.dir("root2");
    std::fs::create_dir_all(root2.join("etc")).unwrap();
    nix::unistd::mkfifo(
        &root2.join("etc/passwd"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let e = err(c.run(&ctx, &root2));
    assert!(e.contains("not a regular file"), "{e}");
}

#[test]
fn dockerignore_hides_files_from_copy() {
    let s = Scratch::new("ignore");
    let c = s.dir("ctx");
    for p in [
        "Dockerfile",
        ".dockerignore",
        "keep.txt",
        "secret.key",
        "logs/a.log",
        "deep/x/y.log",
        "deep/x/z.txt",
        "vendor/big/file",
        "vendor/big/KEEP.md",
        "node_modules/m/index.js",
    ] {
        write(&c.join(p), p.as_bytes(), 0o644, 1_000_000);
    }
    std::fs::write(
        c.join(".dockerignore"),
        "# build junk\n*.key\n**/*.log\nnode_modules\nvendor\n!vendor/**/*.md\nDockerfile\n.dockerignore\n",
    )
    .unwrap();
    let (ctx, df) = prepare(
        ContextArg::Dir(&c),
        DockerfileArg::Default,
        &mut std::io::empty(),
        &s.0,
    )
    .unwrap();
    assert_eq!(
        df.text, "Dockerfile",
        "the Dockerfile is read even though it is ignored"
    );
    let root = s.dir("root");
    copy(&["."], "/all/").run(&ctx, &root).unwrap();
    let mut got = Vec::new();
    collect(&root.join("all"), Path::new(""), &mut got);
    got.sort();
    assert_eq!(
        got,
        [
            "deep",
            "deep/x",
            "deep/x/z.txt",
            "keep.txt",
            "logs",
            "vendor",
            "vendor/big",
            "vendor/big/KEEP.md",
        ]
    );
    for hidden in [
        "secret.key",
        "Dockerfile",
        "node_modules/m/index.js",
        "logs/a.log",
    ] {
        let e = err(copy(&[hidden], "/h").run(&ctx, &root));
        assert!(e.contains("not found") && e.contains(hidden), "{e}");
    }
    let e = err(copy(&["*.key"], "/h/").run(&ctx, &root));
    assert!(e.contains("no source files were specified"), "{e}");
    // An excluded directory named as a source still gives its re-included paths.
    copy(&["vendor"], "/v/").run(&ctx, &root).unwrap();
    assert!(root.join("v/big/KEEP.md").is_file());
    assert!(!root.join("v/big/file").exists());
}

fn collect(base: &Path, rel: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(base.join(rel)).unwrap() {
        let e = e.unwrap();
        let p = rel.join(e.file_name());
        out.push(p.to_string_lossy().into_owned());
        if e.file_type().unwrap().is_dir() {
            collect(base, &p, out);
        }
    }
}

#[test]
fn dockerfile_dockerignore_beside_the_dockerfile_wins() {
    let s = Scratch::new("ignore2");
    let c = s.dir("ctx");
    write(&c.join("a"), b"a", 0o644, 0);
    write(&c.join("b"), b"b", 0o644, 0);
    std::fs::write(c.join(".dockerignore"), "a\n").unwrap();
    std::fs::write(c.join("web.Dockerfile"), "FROM scratch\n").unwrap();
    std::fs::write(c.join("web.Dockerfile.dockerignore"), "b\n").unwrap();
    let (ctx, _) = prepare(
        ContextArg::Dir(&c),
        DockerfileArg::File(Path::new("web.Dockerfile")),
        &mut std::io::empty(),
        &s.0,
    )
    .unwrap();
    let root = s.dir("root");
    copy(&["a"], "/").run(&ctx, &root).unwrap();
    assert!(root.join("a").is_file());
    assert!(err(copy(&["b"], "/").run(&ctx, &root)).contains("not found"));
}

/// A canary directory on the host that nothing may touch.
struct Canary {
    dir: PathBuf,
}

impl Canary {
    fn new(s: &Scratch) -> Canary {
        let dir = s.dir("host-canary-dir");
        std::fs::write(dir.join("canary"), b"host").unwrap();
        Canary { dir }
    }
    fn untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            ["canary"],
            "something was written into the host's canary dir"
        );
        assert_eq!(std::fs::read(self.dir.join("canary")).unwrap(), b"host");
    }
}

#[test]
fn context_paths_cannot_leave_the_context() {
    let s = Scratch::new("ctxescape");
    let canary = Canary::new(&s);
    let c = s.dir("ctx");
    write(&c.join("ok"), b"ok", 0o644, 0);
    write(&s.path("outside-secret"), b"secret", 0o600, 0);
    symlink(&canary.dir, c.join("to-canary")).unwrap();
    symlink("/etc", c.join("to-etc")).unwrap();
    symlink("../outside-secret", c.join("up-secret")).unwrap();
    std::fs::create_dir_all(c.join("sub")).unwrap();
    symlink("/etc/passwd", c.join("sub/passwd")).unwrap();
    let ctx = Context::from_dir(&c).unwrap();
    let root = s.dir("root");
    for src in [
        "../outside-secret",
        "sub/../../outside-secret",
        "to-canary",
        "to-etc/passwd",
        "up-secret",
        "to-canary/*",
        "to-etc/pass*",
    ] {
        let e = err(copy(&[src], "/got").run(&ctx, &root));
        assert!(
            e.contains("outside the build context") && e.contains(src),
            "{src}: {e}"
        );
        assert!(!root.join("got").exists(), "{src} copied something");
    }
    // Inside a copied directory a symlink out is copied as a symlink, never followed.
    copy(&["sub"], "/sub/").run(&ctx, &root).unwrap();
    assert_eq!(
        std::fs::read_link(root.join("sub/passwd")).unwrap(),
        Path::new("/etc/passwd")
    );
    canary.untouched();
}

#[test]
fn a_hostile_destination_root_keeps_writes_inside() {
    let s = Scratch::new("destescape");
    let canary = Canary::new(&s);
    let ctx = sample_context(&s);
    let root = s.dir("root");
    // /app is a symlink to the host's canary dir (absolute), /rel climbs with `..`.
    symlink(&canary.dir, root.join("app")).unwrap();
    symlink("../../../../../../..", root.join("rel")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    symlink(canary.dir.join("canary"), root.join("etc/target")).unwrap();
    copy(&["a.txt"], "/app/").run(&ctx, &root).unwrap();
    copy(&["d"], "/app/tree/").run(&ctx, &root).unwrap();
    let rel_dest = format!("/rel{}/", canary.dir.display());
    copy(&["b.txt"], &rel_dest).run(&ctx, &root).unwrap();
    copy(&["a.txt"], "/etc/target").run(&ctx, &root).unwrap();
    canary.untouched();
    let inside = root.join(canary.dir.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(inside.join("a.txt")).unwrap(), b"alpha");
    assert_eq!(std::fs::read(inside.join("tree/sub/y")).unwrap(), b"y");
    assert_eq!(std::fs::read(inside.join("b.txt")).unwrap(), b"beta");
}

/// A tar with full control of every header (paths with `..`, links).
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_old();
        h.as_mut_bytes()[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(1234);
        h.set_gid(4321);
        h.set_mtime(1_500_000);
        if !link.is_empty() {
            h.as_mut_bytes()[157..157 + link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn add_extracts_local_archives_of_every_compression() {
    let s = Scratch::new("archives");
    let c = s.dir("ctx");
    let tar = raw_tar(&[
        ("top/", tar::EntryType::Directory, b"", ""),
        ("top/f", tar::EntryType::Regular, b"in the archive", ""),
        ("top/l", tar::EntryType::Symlink, b"", "f"),
    ]);
    std::fs::write(c.join("plain.tar"), &tar).unwrap();
    std::fs::write(c.join("a.tgz"), gzip(&tar)).unwrap();
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&tar).unwrap();
    std::fs::write(c.join("a.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut &tar[..], &mut xz).unwrap();
    // The name says nothing: the content decides.
    std::fs::write(c.join("xz-data.bin"), xz).unwrap();
    let zst =
        ruzstd::encoding::compress_to_vec(&tar[..], ruzstd::encoding::CompressionLevel::Fastest);
    std::fs::write(c.join("a.tar.zst"), zst).unwrap();
    std::fs::write(c.join("not-a-tar.gz"), gzip(b"just text")).unwrap();
    let ctx = Context::from_dir(&c).unwrap();
    let root = s.dir("root");
    for (src, dest) in [
        ("plain.tar", "/p"),
        ("a.tgz", "/g/"),
        ("a.tar.bz2", "/b"),
        ("xz-data.bin", "/x"),
        ("a.tar.zst", "/z/"),
    ] {
        add(&[src], dest).run(&ctx, &root).unwrap();
        let d = root.join(dest.trim_matches('/'));
        assert_eq!(
            std::fs::read(d.join("top/f")).unwrap(),
            b"in the archive",
            "{src}"
        );
        assert_eq!(std::fs::read_link(d.join("top/l")).unwrap(), Path::new("f"));
        let m = std::fs::metadata(d.join("top/f")).unwrap();
        assert_eq!(m.mtime(), 1_500_000);
        if is_root() {
            assert_eq!(
                (m.uid(), m.gid()),
                (1234, 4321),
                "ADD keeps the archive's owners"
            );
        }
    }
    if is_root() {
        let mut a = add(&["plain.tar"], "/owned/");
        a.chown = Some("5:6".into());
        a.run(&ctx, &root).unwrap();
        let m = std::fs::metadata(root.join("owned/top/f")).unwrap();
        assert_eq!((m.uid(), m.gid()), (5, 6));
    }
    // Not a tar: copied as it is. COPY never extracts.
    add(&["not-a-tar.gz"], "/n/").run(&ctx, &root).unwrap();
    assert_eq!(
        std::fs::read(root.join("n/not-a-tar.gz")).unwrap(),
        gzip(b"just text")
    );
    copy(&["plain.tar"], "/c/").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("c/plain.tar")).unwrap(), tar);
}

#[test]
fn hostile_archives_write_nothing_outside_the_root() {
    let s = Scratch::new("evilarchive");
    let canary = Canary::new(&s);
    let c = s.dir("ctx");
    let canary_text = canary.dir.to_str().unwrap();
    // A symlink to the host's canary dir, then a file through it.
    let through = raw_tar(&[
        ("evil", tar::EntryType::Symlink, b"", canary_text),
        ("evil/planted", tar::EntryType::Regular, b"evil", ""),
        ("hard", tar::EntryType::Link, b"", "evil/canary"),
    ]);
    std::fs::write(c.join("through.tar"), &through).unwrap();
    let dots = raw_tar(&[(
        "../../../../../../../../../../tmp/berth-dots-escape",
        tar::EntryType::Regular,
        b"evil",
        "",
    )]);
    std::fs::write(c.join("dots.tar"), gzip(&dots)).unwrap();
    let ctx = Context::from_dir(&c).unwrap();
    let root = s.dir("root");
    // The hard link names `evil/canary`, which inside the root does not exist: refused.
    let e = err(add(&["through.tar"], "/x/").run(&ctx, &root));
    assert!(e.contains("cannot link /hard to /evil/canary"), "{e}");
    let e = err(add(&["dots.tar"], "/y/").run(&ctx, &root));
    assert!(e.contains(".."), "{e}");
    assert!(!Path::new("/tmp/berth-dots-escape").exists());
    canary.untouched();
    // The symlink is absolute: as in Docker's chrooted untar it resolves inside the
    // destination directory, to <root>/x/<canary path>.
    let inside = root.join("x").join(canary.dir.strip_prefix("/").unwrap());
    assert_eq!(std::fs::read(inside.join("planted")).unwrap(), b"evil");
    assert!(!inside.join("canary").exists());
}

#[test]
fn a_tar_context_on_stdin_is_extracted_privately_and_safely() {
    let s = Scratch::new("tarctx");
    let canary = Canary::new(&s);
    let tar = raw_tar(&[
        (
            "Dockerfile",
            tar::EntryType::Regular,
            b"FROM scratch\nCOPY f /\n",
            "",
        ),
        ("f", tar::EntryType::Regular, b"from the tar", ""),
        (
            "esc",
            tar::EntryType::Symlink,
            b"",
            canary.dir.to_str().unwrap(),
        ),
        ("esc/planted", tar::EntryType::Regular, b"evil", ""),
    ]);
    let temp = s.dir("tmp");
    let (ctx, df) = prepare(
        ContextArg::Stdin,
        DockerfileArg::Default,
        &mut &gzip(&tar)[..],
        &temp,
    )
    .unwrap();
    assert_eq!(df.text, "FROM scratch\nCOPY f /\n");
    let root = s.dir("root");
    copy(&["f"], "/").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"from the tar");
    // COPY through the archive's symlink out is refused.
    let e = err(copy(&["esc/planted"], "/").run(&ctx, &root));
    assert!(e.contains("outside the build context"), "{e}");
    let ctx_dir = ctx.path().to_path_buf();
    assert_eq!(std::fs::metadata(&ctx_dir).unwrap().mode() & 0o777, 0o700);
    drop(ctx);
    assert!(!ctx_dir.exists(), "the temporary context is removed");
    canary.untouched();
    // `..` entries make the whole context fail, and nothing is left behind.
    let dots = raw_tar(&[("../escaped", tar::EntryType::Regular, b"evil", "")]);
    let e = prepare(
        ContextArg::Stdin,
        DockerfileArg::Default,
        &mut &dots[..],
        &temp,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains(".."), "{e:#}");
    assert!(!s.path("escaped").exists() && !temp.join("escaped").exists());
    assert_eq!(
        std::fs::read_dir(&temp).unwrap().count(),
        0,
        "no context left behind"
    );
}

/// A one-shot-per-connection HTTP server on 127.0.0.1 serving `body` at any path.
fn serve(body: Vec<u8>, last_modified: &'static str) -> (String, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        for stream in listener.incoming().take(8) {
            let mut stream = stream.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            if req.starts_with(b"GET /stop") {
                return;
            }
            let status = if req.starts_with(b"GET /missing") {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nLast-Modified: {last_modified}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body).unwrap();
        }
    });
    (format!("http://{addr}"), handle)
}

fn stop(base: &str, handle: std::thread::JoinHandle<()>) {
    let _ = std::net::TcpStream::connect(base.trim_start_matches("http://"))
        .and_then(|mut s| s.write_all(b"GET /stop HTTP/1.1\r\n\r\n"));
    handle.join().unwrap();
}

#[test]
fn add_downloads_urls_without_extracting_them() {
    let s = Scratch::new("url");
    let c = s.dir("ctx");
    let ctx = Context::from_dir(&c).unwrap();
    let root = s.dir("root");
    let body = gzip(&raw_tar(&[("f", tar::EntryType::Regular, b"x", "")]));
    let (base, server) = serve(body.clone(), "Sun, 06 Nov 1994 08:49:37 GMT");
    let url = format!("{base}/files/site.tar.gz?token=1");
    add(&[&url], "/dl/").run(&ctx, &root).unwrap();
    let f = root.join("dl/site.tar.gz");
    assert_eq!(std::fs::read(&f).unwrap(), body, "a URL is not extracted");
    assert_eq!(mode(&f), 0o600);
    assert_eq!(std::fs::metadata(&f).unwrap().mtime(), 784111777);
    add(&[&url], "/named").run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("named")).unwrap(), body);

    let sha = {
        use sha2::Digest;
        let h = sha2::Sha256::digest(&body);
        h.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let mut good = add(&[&url], "/sum/");
    good.checksum = Some(format!("sha256:{sha}"));
    good.run(&ctx, &root).unwrap();
    let mut bad = add(&[&url], "/bad/");
    bad.checksum = Some(format!("sha256:{}", "0".repeat(64)));
    let e = err(bad.run(&ctx, &root));
    assert!(e.contains("digest mismatch"), "{e}");
    assert!(!root.join("bad").exists());
    let e = err(add(&[&format!("{base}/missing")], "/m").run(&ctx, &root));
    assert!(e.contains("404") && e.contains("/missing"), "{e}");
    let e = err(copy(&[&url], "/c").run(&ctx, &root));
    assert!(e.contains("source can't be a URL for COPY"), "{e}");
    stop(&base, server);
}

#[test]
fn content_digest_keys_content_and_metadata_not_mtimes() {
    let s = Scratch::new("digest");
    let ctx = sample_context(&s);
    let root = s.dir("root");
    let key = |c: &Copy| c.plan(&ctx, &root).unwrap().content_digest(&root).unwrap();
    let base = key(&copy(&["d", "a.txt"], "/app/"));
    assert!(base.starts_with("sha256:") && base.len() == 71);
    assert_eq!(base, key(&copy(&["d", "a.txt"], "/app/")), "deterministic");
    let c = s.path("ctx");
    set_mtime(&c.join("d/sub/y"), 42);
    set_mtime(&c.join("a.txt"), 43);
    assert_eq!(
        base,
        key(&copy(&["d", "a.txt"], "/app/")),
        "mtimes are not keyed"
    );
    std::fs::set_permissions(c.join("a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let after_mode = key(&copy(&["d", "a.txt"], "/app/"));
    assert_ne!(base, after_mode, "modes are keyed");
    std::fs::write(c.join("d/sub/y"), b"Y").unwrap();
    let after_content = key(&copy(&["d", "a.txt"], "/app/"));
    assert_ne!(after_mode, after_content, "contents are keyed");
    assert_ne!(
        after_content,
        key(&copy(&["d", "a.txt"], "/other/")),
        "the destination is keyed"
    );
    let mut chowned = copy(&["d", "a.txt"], "/app/");
    chowned.chown = Some("5:5".into());
    assert_ne!(after_content, key(&chowned), "the owner is keyed");
    let mut chmodded = copy(&["d", "a.txt"], "/app/");
    chmodded.chmod = Some("0700".into());
    assert_ne!(after_content, key(&chmodded), "--chmod is keyed");
    // Applying after keying copies what was keyed.
    let p = copy(&["d"], "/k/").plan(&ctx, &root).unwrap();
    p.content_digest(&root).unwrap();
    p.apply(&root).unwrap();
    assert_eq!(std::fs::read(root.join("k/sub/y")).unwrap(), b"Y");
    // An ignored file does not change the key of a copy of everything.
    let mut ctx2 = Context::from_dir(&c).unwrap();
    ctx2.set_ignore(Matcher::from_patterns(&["junk"]).unwrap());
    let all = |ctx: &Context| {
        copy(&["."], "/")
            .plan(ctx, &root)
            .unwrap()
            .content_digest(&root)
            .unwrap()
    };
    let before = all(&ctx2);
    std::fs::write(c.join("junk"), b"changes every build").unwrap();
    assert_eq!(before, all(&ctx2));
}

#[test]
fn heredocs_fifos_and_xattrs() {
    let s = Scratch::new("special");
    let c = s.dir("ctx");
    nix::unistd::mkfifo(
        &c.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    write(&c.join("x"), b"x", 0o644, 0);
    let xattr_ok = xattr_set(&c.join("x"), "user.berth", b"kept");
    let ctx = Context::from_dir(&c).unwrap();
    let root = s.dir("root");
    copy(&["pipe", "x"], "/sp/").run(&ctx, &root).unwrap();
    let ft = std::fs::symlink_metadata(root.join("sp/pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&ft.file_type()));
    assert_eq!(mode(&root.join("sp/pipe")), 0o640);
    if xattr_ok {
        assert_eq!(
            xattr_get(&root.join("sp/x"), "user.berth"),
            Some(b"kept".to_vec())
        );
    }
    let mut h = copy(&["<<EOF"], "/etc/motd");
    h.heredocs = vec![("EOF".into(), b"hello\n".to_vec())];
    h.run(&ctx, &root).unwrap();
    assert_eq!(std::fs::read(root.join("etc/motd")).unwrap(), b"hello\n");
    assert_eq!(mode(&root.join("etc/motd")), 0o644);
}

fn xattr_set(p: &Path, k: &str, v: &[u8]) -> bool {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let key = std::ffi::CString::new(k).unwrap();
    // SAFETY: NUL-terminated strings and a valid slice.
    unsafe { libc::lsetxattr(path.as_ptr(), key.as_ptr(), v.as_ptr().cast(), v.len(), 0) == 0 }
}

fn xattr_get(p: &Path, k: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let key = std::ffi::CString::new(k).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer valid for its length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            key.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| {
        buf.truncate(n as usize);
        buf
    })
}

#[test]
fn from_another_root_resolves_inside_it() {
    let s = Scratch::new("fromroot");
    let canary = Canary::new(&s);
    let stage = s.dir("stage");
    write(&stage.join("usr/bin/tool"), b"binary", 0o755, 1_000);
    symlink("usr/bin", stage.join("bin")).unwrap();
    // An absolute link in an image means its own root, not the host's.
    symlink(canary.dir.join("canary"), stage.join("abs")).unwrap();
    let root = s.dir("root");
    let c = copy(&["/bin/tool"], "/out/");
    plan(&c.args(), Source::Root(&stage), &root)
        .unwrap()
        .apply(&root)
        .unwrap();
    assert_eq!(std::fs::read(root.join("out/tool")).unwrap(), b"binary");
    assert_eq!(mode(&root.join("out/tool")), 0o755);
    let c = copy(&["/abs"], "/leak");
    let e = format!(
        "{:#}",
        plan(&c.args(), Source::Root(&stage), &root).unwrap_err()
    );
    assert!(e.contains("not found"), "{e}");
    let c = copy(&["../../../../../usr/bin/tool"], "/clamped");
    plan(&c.args(), Source::Root(&stage), &root)
        .unwrap()
        .apply(&root)
        .unwrap();
    assert_eq!(std::fs::read(root.join("clamped")).unwrap(), b"binary");
    canary.untouched();
}

/// Every entry below `dir`: path, kind, permission bits, link target or content digest.
fn tree_listing(dir: &Path, with_owners: bool) -> Vec<String> {
    use sha2::Digest;
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(&rel))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let p = rel.join(&name);
            let full = dir.join(&p);
            let m = std::fs::symlink_metadata(&full).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("-> {}", std::fs::read_link(&full).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_string()
            } else if m.is_file() {
                let h = sha2::Sha256::digest(std::fs::read(&full).unwrap());
                format!("{:02x}{:02x}{:02x}{:02x}", h[0], h[1], h[2], h[3])
            } else {
                format!("special {:o}", m.mode() & libc::S_IFMT)
            };
            let perm = if m.file_type().is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            let owner = if with_owners {
                format!(" {}:{}", m.uid(), m.gid())
            } else {
                String::new()
            };
            out.push(format!("{} {perm:o}{owner} {what}", p.display()));
        }
    }
    out.sort();
    out
}

/// A real tree (the busybox rootfs, or `BERTH_COPY_TREE`) copied as `COPY . /`: the same
/// paths, modes, link targets and contents as `cp -a`, in comparable time.
#[test]
fn a_real_tree_copies_as_cp_does() {
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bundles/busybox/rootfs");
    let tree = std::env::var_os("BERTH_COPY_TREE").map_or(default, PathBuf::from);
    if !tree.is_dir() {
        eprintln!("skipped: {} is missing (make rootfs)", tree.display());
        return;
    }
    let s = Scratch::new("realtree");
    let ctx = Context::from_dir(&tree).unwrap();
    let root = s.dir("root");
    // cp first, so that neither is helped by the other warming the page cache more.
    let cp_dest = s.path("cp");
    let started = std::time::Instant::now();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&tree)
        .arg(&cp_dest)
        .status()
        .unwrap();
    let cp = started.elapsed();
    let started = std::time::Instant::now();
    copy(&["."], "/").run(&ctx, &root).unwrap();
    let ours = started.elapsed();
    assert!(st.success());
    let (a, b) = (tree_listing(&root, false), tree_listing(&cp_dest, false));
    assert!(a.len() > 10, "{a:?}");
    assert_eq!(a, b);
    eprintln!(
        "{} entries: COPY {:.1} ms, cp -a {:.1} ms",
        a.len(),
        ours.as_secs_f64() * 1000.0,
        cp.as_secs_f64() * 1000.0
    );
}

/// The same context and COPY/ADD lines through `buildah bud` (Debian's, the issue's
/// differential peer) and through [`plan`]/`apply` into an empty root: the same paths, modes,
/// owners, link targets and contents. (Debian's buildah 1.28 predates BuildKit's re-inclusion
/// below an excluded directory, so the `.dockerignore` here has none.)
#[test]
fn copy_semantics_match_buildah() {
    if !is_root() || which("buildah").is_none() {
        eprintln!("skipped: needs root and buildah");
        return;
    }
    let s = Scratch::new("buildah");
    let c = s.dir("ctx");
    write(&c.join("a.txt"), b"alpha", 0o640, 1_000_000);
    write(&c.join("b.txt"), b"beta", 0o755, 1_000_000);
    write(&c.join("run.log"), b"log", 0o644, 1_000_000);
    write(&c.join("d/x"), b"x", 0o600, 1_000_000);
    write(&c.join("d/sub/y"), b"y", 0o644, 1_000_000);
    write(&c.join("d/sub/deep.log"), b"log", 0o644, 1_000_000);
    std::fs::hard_link(c.join("d/x"), c.join("d/x-hard")).unwrap();
    symlink("sub/y", c.join("d/rel-link")).unwrap();
    symlink("/etc/passwd", c.join("d/abs-link")).unwrap();
    symlink("d/sub", c.join("dlink")).unwrap();
    std::fs::set_permissions(c.join("d"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::set_permissions(c.join("d/sub"), std::fs::Permissions::from_mode(0o701)).unwrap();
    std::fs::write(
        c.join("plain.tar"),
        raw_tar(&[
            ("top/", tar::EntryType::Directory, b"", ""),
            ("top/f", tar::EntryType::Regular, b"in the archive", ""),
        ]),
    )
    .unwrap();
    std::fs::write(c.join(".dockerignore"), "**/*.log\n").unwrap();
    let lines: &[(&str, Copy)] = &[
        ("COPY a.txt /app/", copy(&["a.txt"], "/app/")),
        ("COPY d /dd", copy(&["d"], "/dd")),
        ("COPY *.txt /g/", copy(&["*.txt"], "/g/")),
        ("COPY d/sub/y /renamed", copy(&["d/sub/y"], "/renamed")),
        ("COPY --chown=7:8 d /chowned/x/", {
            let mut c = copy(&["d"], "/chowned/x/");
            c.chown = Some("7:8".into());
            c
        }),
        ("COPY --chmod=0700 b.txt /modes/", {
            let mut c = copy(&["b.txt"], "/modes/");
            c.chmod = Some("0700".into());
            c
        }),
        ("COPY dlink /followed/", copy(&["dlink"], "/followed/")),
        ("WORKDIR /w", copy(&[], "")),
        ("COPY a.txt b.txt rel/", {
            let mut c = copy(&["a.txt", "b.txt"], "rel/");
            c.workdir = "/w".into();
            c
        }),
        ("COPY . /all/", copy(&["."], "/all/")),
        ("ADD plain.tar /p/", add(&["plain.tar"], "/p/")),
    ];
    let dockerfile: String = std::iter::once("FROM scratch".to_string())
        .chain(lines.iter().map(|(l, _)| l.to_string()))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(c.join("Dockerfile"), format!("{dockerfile}\n")).unwrap();

    let (ctx, _) = prepare(
        ContextArg::Dir(&c),
        DockerfileArg::Default,
        &mut std::io::empty(),
        &s.0,
    )
    .unwrap();
    let ours = s.dir("ours");
    for (line, c) in lines {
        if line.starts_with("WORKDIR") {
            std::fs::create_dir_all(ours.join("w")).unwrap();
            continue;
        }
        c.run(&ctx, &ours)
            .unwrap_or_else(|e| panic!("{line}: {e:#}"));
    }

    let buildah = |args: &[&str]| -> String {
        let out = std::process::Command::new("buildah")
            .arg("--root")
            .arg(s.path("buildah-root"))
            .arg("--runroot")
            .arg(s.path("buildah-run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "buildah {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let ctx_dir = c.to_str().unwrap();
    buildah(&[
        "bud",
        "-q",
        "--layers=false",
        "-t",
        "localhost/berth-copy-diff",
        ctx_dir,
    ]);
    let container = buildah(&["from", "localhost/berth-copy-diff"]);
    let theirs = PathBuf::from(buildah(&["mount", &container]));
    let (mut want, mut got) = (tree_listing(&theirs, true), tree_listing(&ours, true));
    buildah(&["umount", &container]);
    buildah(&["rm", &container]);
    buildah(&["rmi", "-a", "-f"]);
    // WORKDIR's own directory is the executor's, not COPY's.
    want.retain(|l| !l.starts_with("w "));
    got.retain(|l| !l.starts_with("w "));
    assert!(got.len() > 30, "{got:#?}");
    assert_eq!(got, want);
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}
