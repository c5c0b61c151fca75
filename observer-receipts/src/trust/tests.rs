//! The trust rules on real files: owned by `nobody`, group-writable,
//! planted links. These tests run as root (as the suite does), so chown
//! works and root's files count as trusted.
use std::os::unix::fs::{symlink, PermissionsExt};

use super::*;

fn nobody() -> u32 {
    nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .map_or(65534, |u| u.uid.as_raw())
}

fn chown_nobody(path: &Path) {
    std::os::unix::fs::lchown(path, Some(nobody()), None).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_root_file_in_a_private_temporary_directory_is_trusted() {
    // /tmp is root's and sticky (1777): acceptable on the way.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("seed");
    std::fs::write(&path, b"secret").unwrap();
    chmod(&path, 0o600);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut open_file(&path, Secrecy::Secret).unwrap(), &mut text)
        .unwrap();
    assert_eq!(text, "secret");
    // Relative paths and `..` resolve against what was opened.
    let dotted = dir.path().join("sub/../seed");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    open_file(&dotted, Secrecy::Secret).unwrap();
}

#[test]
fn a_file_owned_by_nobody_is_refused_naming_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.seed");
    std::fs::write(&path, [7u8; 32]).unwrap();
    chmod(&path, 0o600);
    chown_nobody(&path);
    let error = open_file(&path, Secrecy::Secret).unwrap_err();
    assert_eq!(error.path, path);
    assert!(
        matches!(error.problem, Problem::Owner { uid, .. } if uid == nobody()),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&format!("{}: is owned by uid {}", path.display(), nobody()))
            && message.contains("must be owned by root"),
        "{message}"
    );
}

#[test]
fn a_directory_owned_by_nobody_or_writable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(policies.join("rules.toml"), "").unwrap();
    TrustedDir::open(&policies).unwrap();

    chown_nobody(&policies);
    let error = TrustedDir::open(&policies).unwrap_err();
    assert_eq!(error.path, policies);
    assert!(matches!(error.problem, Problem::Owner { .. }), "{error:?}");
    // A file below it is refused because of the directory, which is named.
    let error = open_file(&policies.join("rules.toml"), Secrecy::Public).unwrap_err();
    assert_eq!(error.path, policies, "{error}");

    std::os::unix::fs::lchown(&policies, Some(0), None).unwrap();
    for mode in [0o775, 0o757, 0o777] {
        chmod(&policies, mode);
        let error = TrustedDir::open(&policies).unwrap_err();
        assert!(
            matches!(error.problem, Problem::Writable { mode: m } if m == mode),
            "{mode:o}: {error:?}"
        );
        assert!(
            error.to_string().contains(&format!("{mode:04o}")),
            "{error}"
        );
    }
    // 1777 and root's: like /tmp, others may add names but not replace ours.
    chmod(&policies, 0o1777);
    chown_nobody(&policies);
    assert!(TrustedDir::open(&policies).is_err());
    std::os::unix::fs::lchown(&policies, Some(0), None).unwrap();
    chmod(&policies, 0o1777);
    TrustedDir::open(&policies).unwrap();
}

#[test]
fn file_modes_group_writable_and_secret_readable_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("file");
    std::fs::write(&path, "x").unwrap();
    for (mode, secrecy, refused) in [
        (0o644, Secrecy::Public, false),
        (0o664, Secrecy::Public, true),
        (0o646, Secrecy::Public, true),
        (0o600, Secrecy::Secret, false),
        (0o400, Secrecy::Secret, false),
        (0o640, Secrecy::Secret, true),
        (0o604, Secrecy::Secret, true),
    ] {
        chmod(&path, mode);
        let result = open_file(&path, secrecy);
        assert_eq!(result.is_err(), refused, "{mode:o} {secrecy:?}: {result:?}");
    }
    chmod(&path, 0o640);
    let error = open_file(&path, Secrecy::Secret).unwrap_err();
    assert!(
        matches!(error.problem, Problem::Readable { mode: 0o640 }),
        "{error:?}"
    );
    assert!(error.to_string().contains("expected 0600"), "{error}");
    let error = open_file(dir.path(), Secrecy::Public).unwrap_err();
    assert!(matches!(error.problem, Problem::NotAFile), "{error:?}");
}

#[test]
fn a_planted_link_as_the_file_is_refused_and_its_target_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target");
    std::fs::write(&target, "root's file").unwrap();
    chmod(&target, 0o600);
    let link = dir.path().join("seed");
    symlink(&target, &link).unwrap();
    let error = open_file(&link, Secrecy::Secret).unwrap_err();
    assert!(matches!(error.problem, Problem::Symlink), "{error:?}");
    assert_eq!(error.path, link);

    let trusted = TrustedDir::open(dir.path()).unwrap();
    let error = trusted
        .create_temporary("seed".as_ref(), 0o600, OFlag::empty())
        .unwrap_err();
    assert!(matches!(error.problem, Problem::Symlink), "{error:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"root's file");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_symlink());
}

#[test]
fn a_link_on_the_way_is_followed_only_to_a_trusted_target() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    std::fs::write(real.join("f"), "x").unwrap();
    // A root-owned link in a checked directory: followed, target checked.
    symlink("real", dir.path().join("via")).unwrap();
    open_file(&dir.path().join("via/f"), Secrecy::Public).unwrap();
    // The target belongs to nobody: refused, naming the target.
    chown_nobody(&real);
    let error = open_file(&dir.path().join("via/f"), Secrecy::Public).unwrap_err();
    assert_eq!(error.path, real, "{error}");
    // A link below a directory owned by nobody is never followed: the
    // directory holding it is refused first.
    let hostile = real.join("to-etc");
    symlink("/etc", &hostile).unwrap();
    let error = TrustedDir::open(&hostile).unwrap_err();
    assert_eq!(error.path, real, "{error}");
}

#[test]
fn create_makes_missing_directories_private_and_temporaries_get_exactly_their_mode() {
    let dir = tempfile::tempdir().unwrap();
    let sinks = dir.path().join("state/sinks");
    let trusted = TrustedDir::create(&sinks, 0o700).unwrap();
    for d in [dir.path().join("state"), sinks.clone()] {
        assert_eq!(
            std::fs::metadata(&d).unwrap().permissions().mode() & 0o7777,
            0o700
        );
    }
    // A leftover of an interrupted write (a regular file of ours) is
    // replaced.
    std::fs::write(sinks.join("a.tmp"), "old").unwrap();
    let mut file = trusted
        .create_temporary("a.tmp".as_ref(), 0o640, OFlag::empty())
        .unwrap();
    std::io::Write::write_all(&mut file, b"new").unwrap();
    trusted.rename("a.tmp".as_ref(), "a".as_ref()).unwrap();
    trusted.sync().unwrap();
    assert_eq!(std::fs::read(sinks.join("a")).unwrap(), b"new");
    // Exactly the mode asked for, whatever the umask.
    assert_eq!(
        std::fs::metadata(sinks.join("a"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    // A stranger's leftover is not ours to remove.
    std::fs::write(sinks.join("b.tmp"), "theirs").unwrap();
    chown_nobody(&sinks.join("b.tmp"));
    let error = trusted
        .create_temporary("b.tmp".as_ref(), 0o600, OFlag::empty())
        .unwrap_err();
    assert!(matches!(error.problem, Problem::Owner { .. }), "{error:?}");
    assert_eq!(std::fs::read(sinks.join("b.tmp")).unwrap(), b"theirs");
}

#[test]
fn output_files_are_created_new_with_their_mode_and_never_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.jsonl");
    drop(create_output_file(&out, 0o600, OFlag::empty()).unwrap());
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let target = dir.path().join("passwd");
    std::fs::write(&target, "root:x:0:0").unwrap();
    let link = dir.path().join("proof.txt");
    symlink(&target, &link).unwrap();
    let error = create_output_file(&link, 0o600, OFlag::empty()).unwrap_err();
    assert!(matches!(error.problem, Problem::Symlink), "{error:?}");
    assert_eq!(std::fs::read(&target).unwrap(), b"root:x:0:0");
}
