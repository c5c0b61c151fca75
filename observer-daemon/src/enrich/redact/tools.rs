//! Which argument of a command is a secret value, by position: the one
//! after a secret-taking flag, the rest of a tool's short flag (`mysql
//! -pX`), the value after a secret key in `aws configure set KEY V`.
//!
//! Short flags mean different things to different tools (`grep -p`,
//! `ssh -p 22`, `docker run -p 80:80`), so they count only for the tools
//! listed in [`TOOLS`], and only while that tool's arguments run: the
//! next argument naming another known command (`sshpass -p X ssh -p 22`)
//! switches tools.

use super::names::{is_secret_key, takes_secret_value};

/// Which part of a value is the secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape {
    /// All of it.
    Whole,
    /// What follows the first `:` (curl's `user:password`); a value
    /// without one is a user name alone and stays.
    AfterColon,
    /// What follows the first `%` (smbclient's `user%password`).
    AfterPercent,
}

/// Where a tool's flag takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// `-p X` or `-pX` (long flags: `--user X` or `--user=X`).
    NextOrAttached,
    /// `-pX` only: a lone `-p` prompts (mysql), the next argument is not
    /// the password.
    AttachedOnly,
    /// `-p X` when X is not a flag, or `-pX` (mongosh's optional value).
    NextIfValueOrAttached,
}

/// What to do with one argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mask {
    /// Nothing known from its position; the text rules still look at it.
    Keep,
    /// The argument is a secret value.
    Value(Shape),
    /// The first `flag_len` bytes are a flag, the rest its secret value.
    Attached { flag_len: usize, shape: Shape },
}

struct Tool {
    commands: &'static [&'static str],
    flags: &'static [(&'static str, Shape, Form)],
}

use Form::*;
use Shape::*;

const MYSQL_FAMILY: &[&str] = &[
    "mysql",
    "mysqldump",
    "mysqladmin",
    "mysqlimport",
    "mysqlshow",
    "mysqlcheck",
    "mysqlpump",
    "mysqlslap",
    "mariadb",
    "mariadb-dump",
    "mariadb-admin",
    "mariadb-import",
    "mariadb-show",
    "mariadb-check",
    "mariadb-slap",
];

/// Tools whose short flags take a password. Commands listed with no
/// flags are there to end the previous tool's arguments.
const TOOLS: &[Tool] = &[
    Tool {
        commands: &["sshpass"],
        flags: &[("-p", Whole, NextOrAttached)],
    },
    Tool {
        commands: MYSQL_FAMILY,
        flags: &[("-p", Whole, AttachedOnly)],
    },
    Tool {
        commands: &["curl"],
        flags: &[
            ("-u", AfterColon, NextOrAttached),
            ("--user", AfterColon, NextOrAttached),
            ("-U", AfterColon, NextOrAttached),
            ("--proxy-user", AfterColon, NextOrAttached),
        ],
    },
    Tool {
        commands: &["redis-cli", "valkey-cli", "keydb-cli"],
        flags: &[("-a", Whole, NextOrAttached)],
    },
    Tool {
        commands: &[
            "mongosh",
            "mongo",
            "mongodump",
            "mongorestore",
            "mongoexport",
            "mongoimport",
            "mongostat",
            "mongotop",
            "mongofiles",
        ],
        flags: &[("-p", Whole, NextIfValueOrAttached)],
    },
    Tool {
        commands: &["sqlcmd", "bcp"],
        flags: &[("-P", Whole, NextOrAttached)],
    },
    Tool {
        commands: &[
            "ldapsearch",
            "ldapmodify",
            "ldapadd",
            "ldapdelete",
            "ldapmodrdn",
            "ldappasswd",
            "ldapwhoami",
            "ldapcompare",
            "ldapexop",
        ],
        flags: &[("-w", Whole, NextOrAttached)],
    },
    Tool {
        commands: &["zip", "unzip", "zipcloak"],
        flags: &[("-P", Whole, NextOrAttached)],
    },
    Tool {
        commands: &["7z", "7za", "7zr", "7zz", "rar", "unrar"],
        flags: &[("-p", Whole, AttachedOnly)],
    },
    Tool {
        commands: &["smbclient", "rpcclient", "smbcacls", "smbget"],
        flags: &[
            ("-U", AfterPercent, NextOrAttached),
            ("--user", AfterPercent, NextOrAttached),
        ],
    },
    Tool {
        commands: &[REGISTRY_LOGIN],
        flags: &[("-p", Whole, NextOrAttached)],
    },
    Tool {
        commands: &[
            "ssh", "scp", "sftp", "rsync", "sudo", "env", "timeout", "nohup", "nice", "docker",
            "podman", "nerdctl", "buildah", "skopeo", "helm", "oras",
        ],
        flags: &[],
    },
];

/// `docker login -p X` (and podman's, helm registry's...): `-p` is a
/// password only after `login`; `docker run -p 80:80` is a port.
const REGISTRY_LOGIN: &str = "<registry login>";
const REGISTRY_CLIS: &[&str] = &[
    "docker", "podman", "nerdctl", "buildah", "skopeo", "helm", "oras",
];

/// Verbs after which a bare secret key is followed by its value.
const SETTING_VERBS: &[&str] = &["set", "config"];
/// Verbs that read or remove a setting: the key has no value after it.
const READING_VERBS: &[&str] = &[
    "get",
    "--get",
    "--get-all",
    "unset",
    "--unset",
    "--unset-all",
    "list",
    "--list",
    "-l",
];

fn tool_named(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.commands.contains(&name))
}

fn base_name(arg: &str) -> &str {
    arg.rsplit('/').next().unwrap_or(arg)
}

/// `-su` for `-u`: short flags run together, the value-taking one last,
/// so its value is the next argument.
fn ends_short_flag_cluster(arg: &str, flag: &str) -> bool {
    let Some(letter) = flag.strip_prefix('-').filter(|l| l.len() == 1) else {
        return false;
    };
    arg.len() > 2
        && arg.ends_with(letter)
        && arg[1..].bytes().all(|b| b.is_ascii_alphabetic())
        && !arg.starts_with("--")
}

/// Walks one command's arguments, deciding each one's [`Mask`].
#[derive(Default)]
pub(super) struct Walker {
    /// The next argument is a secret value of this shape.
    pending: Option<Shape>,
    /// The next argument is a secret value unless it is a flag.
    pending_if_value: Option<Shape>,
    tool: Option<&'static Tool>,
    tool_name: &'static str,
    setting: bool,
}

impl Walker {
    pub(super) fn step(&mut self, arg: &str) -> Mask {
        // Like getopt, the argument after a value-taking flag is its value
        // even when it looks like a flag, and it is never itself a flag.
        if let Some(shape) = self.pending.take() {
            return Mask::Value(shape);
        }
        if let Some(shape) = self.pending_if_value.take() {
            if !arg.starts_with('-') {
                return Mask::Value(shape);
            }
        }
        if !arg.starts_with('-') {
            self.positional(arg);
            return Mask::Keep;
        }
        if READING_VERBS.contains(&arg) {
            self.setting = false;
        }
        // The tool's own flags first: `mysql -psecret` is `-p` and a
        // password, not a flag named "psecret".
        let mask = self.tool_flag(arg);
        if mask == Mask::Keep
            && self.pending.is_none()
            && self.pending_if_value.is_none()
            && takes_secret_value(arg)
        {
            self.pending = Some(Whole);
        }
        mask
    }

    fn positional(&mut self, arg: &str) {
        let name = base_name(arg);
        if arg == "login" && REGISTRY_CLIS.contains(&self.tool_name) {
            self.tool = tool_named(REGISTRY_LOGIN);
            self.tool_name = REGISTRY_LOGIN;
        } else if let Some(tool) = tool_named(name) {
            self.tool = Some(tool);
            self.tool_name = tool
                .commands
                .iter()
                .find(|c| **c == name)
                .copied()
                .unwrap_or("");
        }
        if self.setting && is_secret_key(arg) {
            self.pending_if_value = Some(Whole);
        }
        if SETTING_VERBS.contains(&arg) {
            self.setting = true;
        } else if READING_VERBS.contains(&arg) {
            self.setting = false;
        }
    }

    fn tool_flag(&mut self, arg: &str) -> Mask {
        let Some(tool) = self.tool else {
            return Mask::Keep;
        };
        for &(flag, shape, form) in tool.flags {
            if arg == flag {
                match form {
                    NextOrAttached => self.pending = Some(shape),
                    NextIfValueOrAttached => self.pending_if_value = Some(shape),
                    AttachedOnly => {}
                }
                return Mask::Keep;
            }
            if form == NextOrAttached && ends_short_flag_cluster(arg, flag) {
                self.pending = Some(shape);
                return Mask::Keep;
            }
            let Some(rest) = arg.strip_prefix(flag) else {
                continue;
            };
            // `--user=X`; a short flag's value follows it directly (`-pX`).
            let flag_len = if flag.starts_with("--") {
                if !rest.starts_with('=') {
                    continue;
                }
                flag.len() + 1
            } else {
                flag.len()
            };
            return Mask::Attached { flag_len, shape };
        }
        Mask::Keep
    }
}
