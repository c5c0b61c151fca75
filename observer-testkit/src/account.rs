//! Test accounts: a system user in a supplementary group, made for a test
//! and removed when dropped (control socket and group-access tests).
use std::process::Command;

/// A group and a user in it (as a supplementary group), created for the
/// test and removed when dropped.
pub struct Account {
    pub user: &'static str,
    pub group: &'static str,
}

fn getent(db: &str, name: &str) -> bool {
    Command::new("getent")
        .args([db, name])
        .output()
        .unwrap()
        .status
        .success()
}

impl Account {
    pub fn create(user: &'static str, group: &'static str) -> Account {
        let a = Account { user, group };
        if !getent("group", group) {
            let ok = Command::new("groupadd")
                .args(["--system", group])
                .status()
                .unwrap();
            assert!(ok.success(), "groupadd {group}");
        }
        if !getent("passwd", user) {
            let ok = Command::new("useradd")
                .args(["--system", "--no-create-home", "--no-user-group"])
                .args(["--gid", "nogroup", "--shell", "/usr/sbin/nologin"])
                .args(["--groups", group, user])
                .status()
                .unwrap();
            assert!(ok.success(), "useradd {user}");
        } else {
            let ok = Command::new("usermod")
                .args(["--append", "--groups", group, user])
                .status()
                .unwrap();
            assert!(ok.success(), "usermod {user}");
        }
        a
    }
}

impl Drop for Account {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(self.user).status();
        let _ = Command::new("groupdel").arg(self.group).status();
    }
}
